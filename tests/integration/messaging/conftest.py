"""A messaging harness on either transport, against the real Postgres and RabbitMQ.

RabbitMQ runs in a virtual host created for the session (deleted afterwards), so cutting its
connections touches nothing else on the broker. Every harness gets its own exchange name.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cluster.settings import Settings, schema_of
from messaging import topology
from messaging.catalogue import CONSUMES
from messaging.consumer import Handler
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from messaging.runtime import MessagingRuntime
from messaging.transport import OutboxMessage
from serve.analytics.tracking import record_domain_event
from serve.common.context import RequestContext, correlation_id_var
from storage import migrate
from storage.engine import create_engine, sessionmaker
from tests.conftest import admin_sql, make_settings, unavailable, with_database

PRODUCERS = ("user", "event", "payment")
TEST_CONSUMERS = ("event", "payment", "notification")  # analytics runs its real handler
EFFECTS_SCHEMA = "messaging_tests"


def effects_table(service: str) -> str:
    return f"{EFFECTS_SCHEMA}.{service}_effects"


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout


@pytest.fixture(scope="session")
def messaging_settings(pg_server: str) -> Iterator[Settings]:
    """A migrated database of the messaging tests' own: no other relay drains its outboxes
    (the e2e platform, when it runs in the same session, relays the shared test database)."""
    name = f"afisha_test_messaging_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        settings = make_settings(database_url=with_database(pg_server, name))
        migrate.upgrade(settings)
        yield settings
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def amqp_vhost_url(amqp_url: str) -> Iterator[str]:
    """The broker URL of a virtual host that lives for this test session."""
    if shutil.which("rabbitmqctl") is None:
        unavailable("rabbitmqctl (to create a test virtual host)", "not on PATH")
    vhost = f"afisha_test_{uuid.uuid4().hex[:10]}"
    user = urlsplit(amqp_url).username or "guest"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        parts = urlsplit(amqp_url)
        yield urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))
    finally:
        rabbitmqctl("delete_vhost", vhost)


def vhost_of(url: str) -> str:
    from urllib.parse import unquote

    return unquote(urlsplit(url).path[1:])


async def eventually(check: Callable[[], Awaitable[Any]], what: str, limit: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``limit`` seconds."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
async def effects_tables(messaging_settings: Settings) -> None:
    """Tables the test handlers write, one per consuming service, in a schema of the tests'
    own (same database, so an effect commits in the consumer's transaction)."""
    engine = create_engine(messaging_settings, "event", pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {EFFECTS_SCHEMA}"))
            for service in TEST_CONSUMERS:
                await conn.execute(text(
                    f"CREATE TABLE IF NOT EXISTS {effects_table(service)} ("
                    "id bigserial PRIMARY KEY, message_id uuid NOT NULL, type text NOT NULL, "
                    "bound_cid text NOT NULL)"))
    finally:
        await engine.dispose()


class Harness:
    """Relays and consumers of every messaging service, wired to one transport."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.transport = settings.transport
        self.engines: dict[str, AsyncEngine] = {}
        self.sessions: dict[str, async_sessionmaker[AsyncSession]] = {}
        self.runtimes: dict[str, MessagingRuntime] = {}
        self.poison_cured = False
        self.consumers_down: set[str] = set()
        self.lose_reply_for: set[uuid.UUID] = set()

    def handlers(self, service: str) -> dict[str, Handler]:
        if service == "analytics":
            return dict.fromkeys(CONSUMES["analytics"], record_domain_event)
        table = effects_table(service)

        async def record(uow: UnitOfWork, envelope: Envelope) -> None:
            if "poison" in str(envelope.data) and not self.poison_cured:
                raise ValueError(f"{service} refuses poison message {envelope.id}")
            await uow.session.execute(
                text(f"INSERT INTO {table} (message_id, type, bound_cid) VALUES (:m, :t, :c)"),
                {"m": envelope.id, "t": envelope.type, "c": correlation_id_var.get()})

        return dict.fromkeys(CONSUMES.get(service, ()), record)

    async def start(self, services: tuple[str, ...] = ("user", "event", "payment",
                                                        "notification", "analytics")) -> None:
        for service in ("user", "event", "payment", "notification", "analytics"):
            self.engines[service] = create_engine(self.settings, service)
            self.sessions[service] = sessionmaker(self.engines[service])
        for service in services:
            await self.start_service(service)

    async def start_service(self, service: str) -> MessagingRuntime:
        runtime = MessagingRuntime(service, self.settings, self.sessions[service],
                                   self.handlers(service), embedded_deliver=self._deliver)
        self.runtimes[service] = runtime
        runtime.start()
        return runtime

    async def _deliver(self, service: str, messages: list[OutboxMessage]) -> None:
        """The embedded transport's hop; in the cluster this is a Serve handle call carrying
        the messages' bytes, parsed by the consumer as here."""
        if service in self.consumers_down or service not in self.runtimes:
            raise ConnectionError(f"the {service} replica is not reachable")
        envelopes = [Envelope.from_json(m.body) for m in messages]
        await self.runtimes[service].deliver(envelopes)
        lost = {e.id for e in envelopes} & self.lose_reply_for
        if lost:
            self.lose_reply_for -= lost
            raise ConnectionError("the consumer replica died before it answered")

    async def cut_connections(self) -> int:
        """RabbitMQ: the broker drops every connection of the test virtual host (how many)."""
        out = await asyncio.to_thread(rabbitmqctl, "close_all_connections", "--vhost",
                                      vhost_of(str(self.settings.amqp_url)), "messaging test")
        closed = re.search(r"Closed (\d+) connections", out)
        assert closed, out
        return int(closed.group(1))

    async def publish(self, producer: str, event_type: str, data: dict[str, Any],
                      aggregate_id: str, correlation_id: str | None = None) -> Envelope:
        ctx = RequestContext(correlation_id=correlation_id or uuid.uuid4().hex)
        async with UnitOfWork(self.sessions[producer], producer, ctx) as uow:
            return uow.publish(event_type, data, aggregate_id=aggregate_id)

    async def effects(self, service: str, message_id: uuid.UUID) -> list[Any]:
        table = ("analytics_service.domain_events" if service == "analytics"
                 else effects_table(service))
        cid = "correlation_id" if service == "analytics" else "bound_cid"
        async with self.engines[service].connect() as conn:
            return list((await conn.execute(
                text(f"SELECT type, {cid} AS cid FROM {table} WHERE message_id = :m"),
                {"m": message_id})).all())

    async def unsent(self, producer: str) -> int:
        async with self.engines[producer].connect() as conn:
            return int(await conn.scalar(
                text(f"SELECT count(*) FROM {schema_of(producer)}.outbox WHERE sent_at IS NULL"))
                or 0)

    async def close(self) -> None:
        for runtime in self.runtimes.values():
            await runtime.close()
        for engine in self.engines.values():
            await engine.dispose()


@pytest.fixture(params=["rabbitmq", "embedded"])
async def harness(request: pytest.FixtureRequest, messaging_settings: Settings,
                  effects_tables: None) -> AsyncIterator[Harness]:
    values: dict[str, Any] = {
        "amqp_exchange": f"afisha.test.{uuid.uuid4().hex[:10]}", "outbox_poll_seconds": 0.5,
        "message_retry_backoff_seconds": 0.01, "message_delivery_limit": 3,
    }
    if request.param == "rabbitmq":
        values["amqp_url"] = request.getfixturevalue("amqp_vhost_url")
    settings = messaging_settings.model_copy(update=values)
    harness = Harness(settings)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()
        if settings.amqp_url:
            import aio_pika

            connection = await aio_pika.connect(settings.amqp_url)
            async with connection:
                await topology.delete_all(await connection.channel(),
                                          topology.Names(settings.amqp_exchange))
