"""The delivery contract, on RabbitMQ and on the embedded transport alike.

Every test publishes through the unit of work (state + outbox in one transaction) and observes
the consumers' committed effects: analytics' real time-series rows, and rows the test's handlers
write in the other consuming services.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import text

from messaging import dlq
from messaging.catalogue import consumers_of
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.common.context import RequestContext
from tests.integration.messaging.conftest import Harness, effects_table, eventually


def payloads() -> dict[str, tuple[str, dict[str, Any]]]:
    """One event per consumer queue: type -> (producer, payload)."""
    ids = {k: uuid.uuid4().hex for k in ("user", "event", "org", "reg", "pay", "tt", "group")}
    return {
        "user.registered": ("user", {"user_id": ids["user"], "display_name": "Ann"}),
        "group.member.added": ("user", {"group_id": ids["group"], "organization_id": ids["org"],
                                        "user_id": ids["user"]}),
        "registration.created": ("event", {
            "registration_id": ids["reg"], "event_id": ids["event"], "organization_id": ids["org"],
            "ticket_type_id": ids["tt"], "user_id": ids["user"], "quantity": 1,
            "status": "pending_payment", "amount": 150000, "currency": "RUB",
            "payment_mode": "full"}),
        "payment.completed": ("payment", {
            "payment_id": ids["pay"], "registration_id": ids["reg"], "event_id": ids["event"],
            "user_id": ids["user"], "kind": "full", "amount": 150000, "currency": "RUB"}),
    }


async def applied_once_everywhere(harness: Harness, envelope: Envelope) -> None:
    for service in consumers_of(envelope.type):
        rows = await eventually(lambda s=service: harness.effects(s, envelope.id),  # type: ignore[misc]
                                f"{service} to apply {envelope.type}")
        assert [r.type for r in rows] == [envelope.type]


async def test_each_consumer_queue_gets_exactly_what_it_consumes(harness: Harness) -> None:
    published = []
    for event_type, (producer, data) in payloads().items():
        cid = f"cid-{uuid.uuid4().hex[:8]}"
        envelope = await harness.publish(producer, event_type, data, data[next(iter(data))], cid)
        published.append(envelope)
    for envelope in published:
        await applied_once_everywhere(harness, envelope)
        for service in ("event", "payment", "notification", "analytics"):
            rows = await harness.effects(service, envelope.id)
            expected = 1 if service in consumers_of(envelope.type) else 0
            assert len(rows) == expected, (service, envelope.type)
            # the envelope's correlation id was bound while the handler ran
            assert all(r.cid == envelope.correlation_id for r in rows)
    assert {s for e in published for s in consumers_of(e.type)} == {
        "event", "payment", "notification", "analytics"}


async def test_the_same_message_delivered_twice_applies_once(harness: Harness) -> None:
    producer, data = payloads()["user.registered"]
    envelope = await harness.publish(producer, "user.registered", data, data["user_id"])
    await applied_once_everywhere(harness, envelope)
    before = harness.runtimes["notification"].consumer.stats.duplicates  # type: ignore[union-attr]
    # the relay crashed after the transport confirmed but before it marked the row sent
    async with harness.engines["user"].begin() as conn:
        await conn.execute(text("UPDATE user_service.outbox SET sent_at = NULL "
                                "WHERE message_id = :m"), {"m": envelope.id})
    for service in consumers_of(envelope.type):
        stats = harness.runtimes[service].consumer.stats  # type: ignore[union-attr]
        start = before if service == "notification" else None

        async def seen_again(stats: Any = stats, start: Any = start) -> bool:
            return bool(stats.duplicates > (start if start is not None else 0))

        await eventually(seen_again, f"{service} to receive the duplicate")
        assert len(await harness.effects(service, envelope.id)) == 1


async def test_consumer_dying_after_commit_before_ack_applies_once(harness: Harness) -> None:
    consumer = harness.runtimes["notification"].consumer
    assert consumer is not None
    producer, data = payloads()["user.registered"]
    if harness.transport == "rabbitmq":
        original = consumer.process
        cut: list[uuid.UUID] = []

        async def process_then_lose_connection(envelope: Envelope) -> Any:
            outcome = await original(envelope)
            if envelope.data.get("user_id") == data["user_id"] and not cut:
                cut.append(envelope.id)
                await harness.cut_connections()  # the ack that follows never reaches the broker
            return outcome

        consumer.process = process_then_lose_connection  # type: ignore[method-assign]
    envelope = await harness.publish(producer, "user.registered", data, data["user_id"])
    harness.lose_reply_for.add(envelope.id)  # embedded: the reply of the committed delivery
    duplicates = consumer.stats.duplicates
    await eventually(lambda: _async(consumer.stats.duplicates > duplicates),
                     "the redelivery after the lost acknowledgement")
    assert len(await harness.effects("notification", envelope.id)) == 1
    assert len(await harness.effects("analytics", envelope.id)) == 1


async def _async(value: Any) -> Any:
    return value


async def test_connections_cut_mid_flow_lose_nothing(harness: Harness) -> None:
    count = 120
    producer, data = payloads()["payment.completed"]

    async def publish_all() -> list[Envelope]:
        sent = []
        for n in range(count):
            sent.append(await harness.publish(producer, "payment.completed",
                                              {**data, "amount": n}, f"pay-{n % 7}"))
            await asyncio.sleep(0.005)
        return sent

    closed: list[int] = []

    async def cut_twice() -> None:
        for _ in range(2):
            await asyncio.sleep(0.3)
            if harness.transport == "rabbitmq":
                closed.append(await harness.cut_connections())
            else:  # the consuming replicas are gone for a moment
                harness.consumers_down.update({"event", "notification"})
                await asyncio.sleep(0.5)
                harness.consumers_down.clear()

    published, _ = await asyncio.gather(publish_all(), cut_twice())
    if harness.transport == "rabbitmq":
        assert closed[0] >= 5  # the payment relay's and the four consumers' connections
    for envelope in published:
        await applied_once_everywhere(harness, envelope)
    await eventually(lambda: _async_unsent_zero(harness), "the outbox to drain")


async def _async_unsent_zero(harness: Harness) -> bool:
    return await harness.unsent("payment") == 0


async def test_order_per_aggregate_is_kept(harness: Harness) -> None:
    producer, data = payloads()["payment.completed"]
    aggregate = uuid.uuid4().hex
    sent = [await harness.publish(producer, "payment.completed", {**data, "amount": n}, aggregate)
            for n in range(30)]
    for envelope in sent:
        await applied_once_everywhere(harness, envelope)
    async with harness.engines["event"].connect() as conn:
        order = [r.message_id for r in await conn.execute(
            text(f"SELECT message_id FROM {effects_table('event')} WHERE message_id = ANY(:ids) "
                 "ORDER BY id"), {"ids": [e.id for e in sent]})]
    assert order == [e.id for e in sent]


async def test_poison_message_is_dead_lettered_with_its_reason_then_requeued(
        harness: Harness) -> None:
    producer, data = payloads()["user.registered"]
    data = {**data, "display_name": "poison"}
    envelope = await harness.publish(producer, "user.registered", data, data["user_id"],
                                     "cid-poison")
    await applied_once_everywhere_but(harness, envelope, "notification")

    async def dead_letter() -> list[dlq.DeadLetter]:
        found = await dlq.dead_letters(harness.settings, ["notification"])
        return [d for d in found if d.message_id == str(envelope.id)]

    (letter,) = await eventually(dead_letter, "the poison message in the dead-letter queue")
    assert letter.reason == f"ValueError: notification refuses poison message {envelope.id}"
    assert letter.type == "user.registered" and letter.correlation_id == "cid-poison"
    assert await harness.effects("notification", envelope.id) == []
    # listing leaves it where it is
    assert [d.message_id for d in await dead_letter()] == [str(envelope.id)]

    harness.poison_cured = True
    requeued = await dlq.dead_letters(harness.settings, ["notification"], requeue=True)
    assert str(envelope.id) in {d.message_id for d in requeued}
    await eventually(lambda: harness.effects("notification", envelope.id),
                     "the requeued message to apply")
    assert await dead_letter() == []
    assert len(await harness.effects("analytics", envelope.id)) == 1


async def applied_once_everywhere_but(harness: Harness, envelope: Envelope, but: str) -> None:
    for service in consumers_of(envelope.type):
        if service != but:
            await eventually(lambda s=service: harness.effects(s, envelope.id),  # type: ignore[misc]
                             f"{service} to apply {envelope.type}")


async def test_a_poison_message_among_others_holds_none_of_them_back(harness: Harness) -> None:
    producer, data = payloads()["user.registered"]
    names = ["first", "poison", "third", "fourth"]
    async with UnitOfWork(harness.sessions[producer], producer, RequestContext()) as uow:
        sent = [uow.publish("user.registered", {**data, "display_name": name},
                            aggregate_id=f"{data['user_id']}-{name}") for name in names]
    for envelope in sent:
        await applied_once_everywhere_but(harness, envelope, "notification")
    healthy = [e for e in sent if e.data["display_name"] != "poison"]
    for envelope in healthy:
        rows = await eventually(lambda e=envelope: harness.effects("notification", e.id),  # type: ignore[misc]
                                "notification to apply the healthy messages")
        assert len(rows) == 1

    async def dead() -> list[dlq.DeadLetter]:
        return [d for d in await dlq.dead_letters(harness.settings, ["notification"])
                if d.message_id == str(sent[1].id)]

    await eventually(dead, "the poison message in the dead-letter queue")
    assert await harness.effects("notification", sent[1].id) == []
