"""A platform of its own for the fault suite (its replicas and hosts are killed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import new_database
from tests.e2e.conftest import RunningPlatform, started_platform
from tests.fakes.telegram_api import FakeTelegram


@pytest.fixture(scope="session")
def chaos_platform(pg_server: str, amqp_url: str, redis_url: str, bot_api: FakeTelegram,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    with new_database(pg_server, "chaos") as database, \
            started_platform(database, amqp_url, redis_url, bot_api,
                             tmp_path_factory.mktemp("chaos")) as running:
        yield running
