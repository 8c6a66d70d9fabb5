"""The outbox relay against the real Postgres: wake-up, several replicas, failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cluster.settings import Settings
from messaging.embedded import EmbeddedTransport
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from messaging.relay import Relay
from messaging.transport import OutboxMessage
from serve.common.context import RequestContext
from storage.engine import create_engine, sessionmaker
from tests.integration.messaging.conftest import eventually


class Consumers:
    """Stands for the consuming services: records what reaches them; can be made to fail."""

    def __init__(self) -> None:
        self.received: list[uuid.UUID] = []
        self.failures_left = 0

    async def deliver(self, service: str, messages: list[OutboxMessage]) -> None:
        # One service's deliveries fail, so each failure is one failed relay attempt however
        # many services consume the message.
        if service == "analytics" and self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("consumer replica unavailable")
        if service == "analytics":
            self.received.extend(Envelope.from_json(m.body).id for m in messages)


@pytest.fixture
async def engine(messaging_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(messaging_settings, "event")
    async with engine.begin() as conn:  # start from an empty outbox
        await conn.execute(text("UPDATE event_service.outbox SET sent_at = now() "
                                "WHERE sent_at IS NULL"))
    yield engine
    await engine.dispose()


def relay(settings: Settings, engine: AsyncEngine, consumers: Consumers,
          poll_seconds: float = 0.2, linger_seconds: float = 0.0,
          listening_poll_seconds: float | None = None, database_url: str | None = None
          ) -> Relay:
    return Relay("event", sessionmaker(engine), EmbeddedTransport(consumers.deliver),
                 database_url=database_url or settings.database_url_for("event"),
                 poll_seconds=poll_seconds, batch_size=7, retry_backoff=0.01,
                 linger_seconds=linger_seconds, listening_poll_seconds=listening_poll_seconds)


async def publish(engine: AsyncEngine, count: int) -> list[uuid.UUID]:
    ids = []
    for n in range(count):
        async with UnitOfWork(sessionmaker(engine), "event", RequestContext()) as uow:
            ids.append(uow.publish("event.published", {
                "event_id": f"e{n % 3}", "organization_id": "o", "title": "t",
                "starts_at": "2030-01-01T10:00:00Z"}, aggregate_id=f"e{n % 3}").id)
    return ids


async def unannounced(engine: AsyncEngine) -> uuid.UUID:
    """An outbox row committed without the NOTIFY a unit of work sends with it."""
    envelope = Envelope(type="event.published", producer="event", correlation_id="c", data={
        "event_id": "e9", "organization_id": "o", "title": "t",
        "starts_at": "2030-01-01T10:00:00Z"})
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO event_service.outbox (message_id, type, aggregate_id, envelope) "
            "VALUES (:id, :type, 'e9', CAST(:envelope AS jsonb))"),
            {"id": envelope.id, "type": envelope.type, "envelope": envelope.model_dump_json()})
    return envelope.id


async def unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(
            "SELECT count(*) FROM event_service.outbox WHERE sent_at IS NULL")) or 0)


async def test_two_replicas_send_each_message_once_in_outbox_order(
        messaging_settings: Settings, engine: AsyncEngine) -> None:
    consumers = Consumers()
    replicas = [relay(messaging_settings, engine, consumers) for _ in range(2)]
    for r in replicas:
        r.start()
    try:
        published = await publish(engine, 60)

        async def all_arrived() -> bool:
            return len(consumers.received) >= 60 and await unsent(engine) == 0

        await eventually(all_arrived, "every message to be relayed")
    finally:
        for r in replicas:
            await r.close()
    assert consumers.received == published


async def test_the_commit_notification_wakes_the_relay_before_its_poll(
        messaging_settings: Settings, engine: AsyncEngine) -> None:
    consumers = Consumers()
    sleepy = relay(messaging_settings, engine, consumers, poll_seconds=3600)
    sleepy.start()
    try:
        await eventually(lambda: _listening(sleepy), "the relay to LISTEN")
        (published,) = await publish(engine, 1)
        await eventually(lambda: _has(consumers, published), "the NOTIFY wake-up", limit=30)
    finally:
        await sleepy.close()


async def test_a_listening_relay_does_not_poll_and_its_next_wake_takes_what_it_missed(
        messaging_settings: Settings, engine: AsyncEngine) -> None:
    consumers = Consumers()
    quiet = relay(messaging_settings, engine, consumers, poll_seconds=0.1,
                  listening_poll_seconds=3600)
    quiet.start()
    try:
        await eventually(lambda: _listening(quiet), "the relay to LISTEN")
        missed = await unannounced(engine)
        await asyncio.sleep(1.0)  # ten polls' worth at the interval used without a listener
        assert missed not in consumers.received
        (announced,) = await publish(engine, 1)
        await eventually(lambda: _has(consumers, announced), "the NOTIFY wake-up", limit=30)
        assert consumers.received[-2:] == [missed, announced]
    finally:
        await quiet.close()


async def test_without_its_listener_the_relay_polls(
        messaging_settings: Settings, engine: AsyncEngine) -> None:
    consumers = Consumers()
    deaf = relay(messaging_settings, engine, consumers, poll_seconds=0.1,
                 listening_poll_seconds=3600,
                 database_url="postgresql+asyncpg://nobody@127.0.0.1:1/nothing")
    deaf.start()
    try:
        await asyncio.sleep(0.5)  # past its first drain, which runs on start
        missed = await unannounced(engine)
        await eventually(lambda: _has(consumers, missed), "a poll to find the row", limit=30)
        assert not deaf.listening
    finally:
        await deaf.close()


class Batches(Consumers):
    """Also records how many messages each delivery to one consumer carried."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def deliver(self, service: str, messages: list[OutboxMessage]) -> None:
        if service == "analytics":
            self.sizes.append(len(messages))
        await super().deliver(service, messages)


async def test_rows_committed_right_after_the_first_leave_in_its_batch(
        messaging_settings: Settings, engine: AsyncEngine) -> None:
    consumers = Batches()
    lingering = relay(messaging_settings, engine, consumers, poll_seconds=3600,
                      linger_seconds=1.0)
    lingering.start()
    try:
        await eventually(lambda: _listening(lingering), "the relay to LISTEN")
        published = await publish(engine, 1)
        await asyncio.sleep(0.2)  # unlingering, the first would be delivered by now
        published += await publish(engine, 2)

        async def all_arrived() -> bool:
            return len(consumers.received) == 3

        await eventually(all_arrived, "the three messages", limit=30)
    finally:
        await lingering.close()
    assert consumers.received == published
    assert consumers.sizes == [3]  # one delivery, not one per commit


async def _listening(r: Relay) -> bool:
    return r.listening


async def _has(consumers: Consumers, message_id: uuid.UUID) -> bool:
    return message_id in consumers.received


async def test_failed_sends_are_recorded_and_retried_until_they_succeed(
        messaging_settings: Settings, engine: AsyncEngine) -> None:
    consumers = Consumers()
    consumers.failures_left = 3
    r = relay(messaging_settings, engine, consumers)
    (published,) = await publish(engine, 1)
    lag = await r.lag()
    assert lag["unsent"] == 1 and lag["oldest_age_seconds"] >= 0
    r.start()
    try:
        await eventually(lambda: _has(consumers, published), "the retried delivery")
        # The row is marked sent after the delivery returns: wait for that commit too.
        async def drained() -> bool:
            return await r.lag() == {"unsent": 0, "oldest_age_seconds": 0}

        await eventually(drained, "the delivered row to be marked sent")
        async with engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT attempts, last_error, sent_at FROM event_service.outbox "
                "WHERE message_id = :m"), {"m": published})).one()
    finally:
        await r.close()
    assert row.attempts == 4  # three failures recorded on the head row, then the send
    assert row.last_error == "ConnectionError: consumer replica unavailable"
    assert row.sent_at is not None
    assert r.failures == 0


async def test_rows_sent_longer_ago_than_the_retention_are_pruned(
        messaging_settings: Settings, engine: AsyncEngine) -> None:
    old, recent, waiting = await publish(engine, 3)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE event_service.outbox SET sent_at = now() - "
                                "interval '200 hours' WHERE message_id = :m"), {"m": old})
        await conn.execute(text("UPDATE event_service.outbox SET sent_at = now() "
                                "WHERE message_id = :m"), {"m": recent})
    r = relay(messaging_settings, engine, Consumers())
    assert await r.prune() >= 1
    async with engine.connect() as conn:
        left = {row.message_id for row in await conn.execute(text(
            "SELECT message_id FROM event_service.outbox WHERE message_id = ANY(:ids)"),
            {"ids": [old, recent, waiting]})}
    assert left == {recent, waiting}
