"""Pure parts of the messaging runtime: routing, grouping, AMQP message shape, backoff."""

from __future__ import annotations

import aio_pika
import pytest

from messaging.amqp import outbox_message, to_message
from messaging.catalogue import CONSUMES, consumers_of
from messaging.consumer import ConsumerRuntime
from messaging.embedded import EmbeddedTransport
from messaging.envelope import Envelope
from messaging.topology import Names, queue_arguments
from messaging.transport import OutboxMessage
from serve.common.retry import backoff


def envelope(event_type: str = "payment.completed", cid: str = "cid-1") -> Envelope:
    return Envelope(type=event_type, producer="payment", correlation_id=cid, data={"n": 1})


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n, 0.1) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.8]
    assert backoff(30, 0.1) == 5.0


def test_amqp_messages_are_persistent_and_carry_id_type_and_correlation_id() -> None:
    env = envelope(cid="req-42")
    message = to_message(env)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.message_id == str(env.id)
    assert message.correlation_id == "req-42"
    assert message.headers["x-correlation-id"] == "req-42"
    assert message.type == "payment.completed" and message.app_id == "payment"
    assert Envelope.from_json(message.body) == env


def test_an_outbox_row_is_published_as_its_stored_bytes_with_the_same_properties() -> None:
    env = envelope(cid="req-7")
    row = OutboxMessage.of("agg", env)
    raw, built = outbox_message(row), to_message(env)
    assert raw.body == row.body and Envelope.from_json(raw.body) == env
    for name in ("delivery_mode", "message_id", "correlation_id", "type", "app_id",
                 "timestamp", "headers", "content_type"):
        assert getattr(raw, name) == getattr(built, name), name
    assert row.envelope == env


def test_consumer_queues_are_quorum_with_a_dead_letter_exchange_and_delivery_limit() -> None:
    names = Names("afisha.events")
    assert names.queue("payment") == "afisha.events.payment"
    assert queue_arguments(names, "payment", 5) == {
        "x-queue-type": "quorum", "x-dead-letter-exchange": "afisha.events.payment.dlx",
        "x-delivery-limit": 5}


async def test_embedded_transport_hands_each_consumer_exactly_its_messages_in_order() -> None:
    received: dict[str, list[str]] = {}

    async def deliver(service: str, messages: list[OutboxMessage]) -> None:
        received.setdefault(service, []).extend(m.type for m in messages)

    types = ["payment.completed", "registration.created", "group.member.added",
             "payment.refunded", "group.created"]
    await EmbeddedTransport(deliver).send(
        [OutboxMessage.of("x", envelope(t)) for t in types])
    assert received == {service: [t for t in types if t in CONSUMES[service]]
                        for service in CONSUMES if any(t in CONSUMES[service] for t in types)}
    assert consumers_of("group.created") == []  # nobody consumes it: nothing to deliver


def test_a_handler_for_an_event_the_service_does_not_consume_is_refused() -> None:
    async def handler(uow: object, envelope: Envelope) -> None:
        return None

    with pytest.raises(ValueError, match=r"user\.registered"):
        ConsumerRuntime("payment", None, {"user.registered": handler})  # type: ignore[arg-type,dict-item]
    assert ConsumerRuntime("payment", None, {"event.cancelled": handler}).handlers  # type: ignore[arg-type,dict-item]
