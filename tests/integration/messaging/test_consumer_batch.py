"""Messages that arrive together: one inbox insert, handlers in order, batch handlers once."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from cluster.settings import Settings
from messaging.catalogue import CONSUMES
from messaging.consumer import BatchHandler, ConsumerRuntime, Unhandled
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.analytics.tracking import record_domain_event
from storage.analytics import domain_events
from storage.engine import create_engine, sessionmaker


def envelope(event_type: str) -> Envelope:
    return Envelope(type=event_type, producer="user", correlation_id=uuid.uuid4().hex,
                    data={"user_id": uuid.uuid4().hex, "display_name": "Ann"})


async def test_a_batch_applies_each_new_message_once_in_order(
        messaging_settings: Settings) -> None:
    engine = create_engine(messaging_settings, "event")
    seen: list[uuid.UUID] = []

    async def handler(uow: UnitOfWork, message: Envelope) -> None:
        seen.append(message.id)

    runtime = ConsumerRuntime("event", sessionmaker(engine),
                              dict.fromkeys(CONSUMES["event"], handler))
    try:
        earlier, first, second = (envelope("payment.refunded") for _ in range(3))
        assert await runtime.process(earlier) == "applied"
        outcomes = await runtime.process_batch([first, earlier, second, first])
        assert outcomes == ["applied", "duplicate", "applied", "duplicate"]
        assert seen == [earlier.id, first.id, second.id]
    finally:
        await engine.dispose()


async def test_a_message_without_a_handler_is_kept_not_acked(
        messaging_settings: Settings) -> None:
    """Nothing is acked as ignored: a batch or a message with an unhandled type raises, so
    the transport keeps it (the relay retries, RabbitMQ requeues), and nothing of it is written."""
    engine = create_engine(messaging_settings, "event")
    seen: list[uuid.UUID] = []

    async def handler(uow: UnitOfWork, message: Envelope) -> None:
        seen.append(message.id)

    partial = {"payment.refunded": handler}
    runtime = ConsumerRuntime("event", sessionmaker(engine), partial)
    try:
        assert runtime.missing == ("payment.completed", "group.member.added")
        handled, unhandled = envelope("payment.refunded"), envelope("payment.completed")
        with pytest.raises(Unhandled):
            await runtime.process(unhandled)
        with pytest.raises(Unhandled):
            await runtime.process_batch([handled, unhandled])
        with pytest.raises(Unhandled):
            await runtime.deliver([handled, unhandled])
        assert seen == []  # the handled one of the batch was not applied either
        assert await runtime.process(handled) == "applied"  # nor recorded in the inbox
        assert runtime.stats.applied == 1 and runtime.stats.dead_lettered == 0
    finally:
        await engine.dispose()


async def test_a_batch_handler_writes_all_its_messages_at_once(
        messaging_settings: Settings) -> None:
    assert isinstance(record_domain_event, BatchHandler)
    engine = create_engine(messaging_settings, "analytics")
    runtime = ConsumerRuntime("analytics", sessionmaker(engine),
                              dict.fromkeys(CONSUMES["analytics"], record_domain_event))
    try:
        batch = [envelope("user.registered") for _ in range(5)]
        assert await runtime.process_batch([*batch, batch[0]]) == ["applied"] * 5 + ["duplicate"]
        assert await runtime.process_batch(batch[:2]) == ["duplicate"] * 2
        async with engine.connect() as conn:
            rows = await conn.scalar(select(func.count()).select_from(domain_events).where(
                domain_events.c.message_id.in_([e.id for e in batch])))
        assert rows == 5
    finally:
        await engine.dispose()


async def test_a_batch_handler_runs_before_a_later_message_of_another_handler(
        messaging_settings: Settings) -> None:
    """Arrival order holds between handlers: a registration created and then cancelled in
    the same delivery is created first, even though creations are written together."""
    engine = create_engine(messaging_settings, "payment")
    log: list[tuple[str, int]] = []

    async def many(uow: UnitOfWork, messages: list[Envelope]) -> None:
        log.append(("created", len(messages)))

    async def cancelled(uow: UnitOfWork, message: Envelope) -> None:
        log.append(("cancelled", 1))

    runtime = ConsumerRuntime("payment", sessionmaker(engine), {
        "registration.created": BatchHandler(many), "registration.cancelled": cancelled,
        "event.cancelled": cancelled})
    try:
        a, b, c = (envelope("registration.created") for _ in range(3))
        stop = envelope("registration.cancelled")
        assert await runtime.process_batch([a, b, stop, c]) == ["applied"] * 4
        assert log == [("created", 2), ("cancelled", 1), ("created", 1)]
    finally:
        await engine.dispose()


async def test_a_consumer_missing_handlers_does_not_consume_its_queue(
        messaging_settings: Settings, amqp_url: str) -> None:
    """On RabbitMQ a service whose handlers do not cover its bound keys leaves its queue
    alone: what is bound to it waits there instead of being acked."""
    from messaging.runtime import MessagingRuntime

    engine = create_engine(messaging_settings, "event")
    settings = messaging_settings.model_copy(update={
        "amqp_url": amqp_url, "amqp_exchange": f"afisha.test.{uuid.uuid4().hex[:8]}"})

    async def handler(uow: UnitOfWork, message: Envelope) -> None:
        raise AssertionError("nothing is consumed")

    runtime = MessagingRuntime("event", settings, sessionmaker(engine),
                               {"payment.refunded": handler})
    try:
        await runtime._start_consumer()
        assert runtime.amqp_consumer is None
        consumer = runtime.consumer
        assert consumer is not None
        assert consumer.missing == ("payment.completed", "group.member.added")
    finally:
        await runtime.close()
        await engine.dispose()
