"""Integration fixtures: migrated database, one shared Ray instance for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cluster.settings import Settings
from storage import migrate
from tests.conftest import make_settings


@pytest.fixture(scope="session")
def migrated_settings(fresh_database: str) -> Settings:
    settings = make_settings(database_url=fresh_database)
    migrate.upgrade(settings)
    return settings


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="afisha-tests",
             logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()
