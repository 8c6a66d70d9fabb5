"""Shared fixtures: real services from ``AFISHA_TEST_*`` URLs, a fresh database per session.

When a service cannot be reached the tests that need it are skipped, unless
``AFISHA_REQUIRE_SERVICES=1`` (as in CI), which turns that into a failure.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from cluster.settings import Settings
from tests.fakes.server import running
from tests.fakes.telegram_api import FakeTelegram, create_app

REQUIRE = os.environ.get("AFISHA_REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get("AFISHA_TEST_DATABASE_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("AFISHA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("AFISHA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unavailable(what: str, error: object) -> None:
    message = f"{what} is not reachable ({error})"
    if REQUIRE:
        pytest.fail(f"{message}; AFISHA_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


def reachable(url: str) -> Exception | None:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return None
    except OSError as exc:
        return exc


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


# The server tests create their databases on: AFISHA_TEST_DATABASE_URL's, or an embedded one.
ADMIN = {"url": PG_ADMIN_URL}


async def admin_sql(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN["url"])
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """AFISHA_TEST_DATABASE_URL's server; on a machine without it (and outside CI) an embedded
    PostgreSQL started for this session, so every test that needs only PostgreSQL runs."""
    error = reachable(PG_ADMIN_URL)
    if not error:
        yield PG_ADMIN_URL
        return
    if REQUIRE:
        unavailable(f"PostgreSQL at {PG_ADMIN_URL}", error)
    from cluster.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg"))
    url = server.start().replace("postgresql+asyncpg://", "postgresql://")
    ADMIN["url"] = url
    try:
        yield url
    finally:
        ADMIN["url"] = PG_ADMIN_URL
        server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One last line naming what was skipped and why (nothing is, with the services up)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else "skipped"
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    terminalreporter.write_line(
        f"skipped {len(skipped)} tests: " + "; ".join(
            f"{n} because {reason}" for reason, n in sorted(reasons.items())))


@contextmanager
def new_database(pg_server: str, label: str) -> Iterator[str]:
    """A database of its own, dropped afterwards."""
    name = f"afisha_test_{label}_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(pg_server, name)
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def fresh_database(pg_server: str) -> Iterator[str]:
    """A database created for this test session's integration tests."""
    with new_database(pg_server, "it") as url:
        yield url


@pytest.fixture(scope="session")
def platform_database(pg_server: str) -> Iterator[str]:
    """The running platform's own database: its relays and sandbox sender touch no other."""
    with new_database(pg_server, "e2e") as url:
        yield url


@pytest.fixture(scope="session")
def amqp_url() -> str:
    error = reachable(AMQP_URL)
    if error:
        unavailable(f"RabbitMQ at {AMQP_URL}", error)
    return AMQP_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    error = reachable(REDIS_URL)
    if error:
        unavailable(f"Redis at {REDIS_URL}", error)
    return REDIS_URL


def make_settings(**values: object) -> Settings:
    """Settings from explicit values only (no environment, no .env)."""
    return Settings.model_validate(values)




@pytest.fixture(scope="session")
def bot_api() -> Iterator[FakeTelegram]:
    """The Bot API double the platform's notification service talks to: on a free port, or on
    ``AFISHA_E2E_BOT_API_PORT``, where a platform deployed beforehand (make cluster) looks for
    it."""
    fake = FakeTelegram()
    port = int(os.environ.get("AFISHA_E2E_BOT_API_PORT") or 0) or None
    with running(create_app(fake), port) as url:
        fake.url = url
        yield fake
