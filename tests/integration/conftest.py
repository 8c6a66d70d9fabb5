"""Integration fixtures: migrated database, one shared Ray instance for the session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cluster.settings import Settings
from storage import migrate
from storage.engine import create_engine, sessionmaker
from tests.conftest import make_settings


@pytest.fixture(scope="session")
def migrated_settings(fresh_database: str) -> Settings:
    settings = make_settings(database_url=fresh_database)
    migrate.upgrade(settings)
    return settings


@pytest.fixture
async def payment_sessions(migrated_settings: Settings) -> AsyncIterator[Any]:
    """Sessions of the payment service's schema on the migrated test database."""
    engine = create_engine(migrated_settings, "payment", pool_size=5)
    yield sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="afisha-tests",
             logging_level="WARNING")
    try:
        yield
    finally:
        ray.shutdown()
