"""Dead letters for operators (``afisha events dlq``): list them, requeue them.

RabbitMQ: each consuming service's ``<exchange>.<service>.dlq``; listing reads messages without
acknowledging them (they stay), requeueing publishes each back to its service's queue (with
confirms) and then removes it from the dead-letter queue.

Embedded: each consuming service's ``dead_letter`` table; requeueing marks the message unsent
again in its publisher's outbox, so the relay delivers it anew (consumers that already applied
it skip it through their inbox), and then deletes the dead-letter row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from cluster.settings import Settings
from messaging import topology
from messaging.amqp import QUEUE_HEADER, REASON_HEADER
from messaging.catalogue import CONSUMES
from messaging.consumer import consumer_tables
from messaging.envelope import Envelope
from messaging.outbox import channel_of, outbox_for
from storage.engine import create_engine

_DEAD_LETTER_HEADERS = {REASON_HEADER, QUEUE_HEADER, "x-afisha-failed-at", "x-death",
                        "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                        "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
                        "x-delivery-count"}


@dataclass(frozen=True)
class DeadLetter:
    service: str
    message_id: str
    type: str
    reason: str
    correlation_id: str
    failed_at: str


def _services(services: Iterable[str] | None) -> list[str]:
    chosen = list(services or CONSUMES)
    unknown = [s for s in chosen if s not in CONSUMES]
    if unknown:
        raise ValueError(f"not a consuming service: {', '.join(unknown)}")
    return chosen


async def dead_letters(settings: Settings, services: Iterable[str] | None = None,
                       limit: int = 100, requeue: bool = False) -> list[DeadLetter]:
    """Up to ``limit`` dead letters per service; with ``requeue`` they are sent back."""
    if settings.amqp_url:
        return await _amqp(settings, _services(services), limit, requeue)
    return await _embedded(settings, _services(services), limit, requeue)


def _from_amqp(service: str, message: Any) -> DeadLetter:
    headers = message.headers or {}
    deaths = headers.get("x-death") or [{}]
    reason = headers.get(REASON_HEADER) or f"broker: {deaths[0].get('reason', 'unknown')}"
    return DeadLetter(service, str(message.message_id), str(message.type), str(reason),
                      str(message.correlation_id), str(headers.get("x-afisha-failed-at", "")))


async def _amqp(settings: Settings, services: list[str], limit: int,
                requeue: bool) -> list[DeadLetter]:
    names = topology.Names(settings.amqp_exchange)
    found: list[DeadLetter] = []
    connection = await aio_pika.connect(str(settings.amqp_url), timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for service in services:
            await topology.declare_consumer(channel, names, service,
                                            settings.message_delivery_limit)
            queue = await channel.get_queue(names.dlq(service), ensure=True)
            for _ in range(limit):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                found.append(_from_amqp(service, message))
                if requeue:
                    headers = {k: v for k, v in message.headers.items()
                               if k not in _DEAD_LETTER_HEADERS}
                    again = aio_pika.Message(
                        body=message.body, headers=headers, content_type=message.content_type,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message.message_id, correlation_id=message.correlation_id,
                        type=message.type, app_id=message.app_id, timestamp=message.timestamp)
                    await channel.default_exchange.publish(
                        again, routing_key=names.queue(service), timeout=10)
                    await message.ack()
        # Closing the channel returns every message listed but not requeued.
    finally:
        await connection.close()
    return found


async def _embedded(settings: Settings, services: list[str], limit: int,
                    requeue: bool) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    for service in services:
        _, table = consumer_tables(service)
        engine = create_engine(settings, service, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = (await conn.execute(select(table).order_by(table.c.id).limit(limit))).all()
            for row in rows:
                envelope = Envelope.model_validate(row.envelope)
                found.append(DeadLetter(service, str(row.message_id), row.type, row.reason,
                                        envelope.correlation_id, row.failed_at.isoformat()))
                if requeue:
                    await _unsend(settings, envelope)
                    async with engine.begin() as conn:
                        await conn.execute(delete(table).where(table.c.id == row.id))
        finally:
            await engine.dispose()
    return found


async def _unsend(settings: Settings, envelope: Envelope) -> None:
    """Make the publisher's relay send ``envelope`` again."""
    outbox = outbox_for(envelope.producer)
    engine = create_engine(settings, envelope.producer, pool_size=1)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(update(outbox).where(
                outbox.c.message_id == envelope.id).values(sent_at=None))
            if not result.rowcount:
                await conn.execute(pg_insert(outbox).values(
                    message_id=envelope.id, type=envelope.type, aggregate_id=str(envelope.id),
                    envelope=envelope.model_dump(mode="json")).on_conflict_do_nothing())
            await conn.execute(text(f"NOTIFY {channel_of(envelope.producer)}"))
    finally:
        await engine.dispose()
