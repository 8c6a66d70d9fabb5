"""The RabbitMQ transport: a publisher with confirms for the relay, a consumer for each service.

Messages are persistent, carry the envelope as JSON, its id as ``message_id`` and the
correlation id both as the AMQP ``correlation_id`` property and an ``x-correlation-id`` header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from messaging import topology
from messaging.consumer import ConsumerRuntime, Unhandled
from messaging.envelope import Envelope
from messaging.transport import OutboxMessage
from serve.common.logs import get_logger
from serve.common.retry import backoff

REASON_HEADER = "x-afisha-reason"
QUEUE_HEADER = "x-afisha-queue"
log = get_logger("messaging.amqp")


def to_message(envelope: Envelope, headers: dict[str, Any] | None = None) -> aio_pika.Message:
    return aio_pika.Message(
        body=envelope.to_json(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.id),
        correlation_id=envelope.correlation_id,
        type=envelope.type,
        app_id=envelope.producer,
        timestamp=envelope.occurred_at,
        headers={"x-correlation-id": envelope.correlation_id,
                 "x-schema-version": envelope.schema_version, **(headers or {})},
    )


def outbox_message(m: OutboxMessage) -> aio_pika.Message:
    """The broker message of an outbox row: its stored bytes, with ``to_message``'s
    properties."""
    return aio_pika.Message(
        body=m.body, content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=m.message_id,
        correlation_id=m.correlation_id, type=m.type, app_id=m.producer,
        timestamp=m.occurred_at,
        headers={"x-correlation-id": m.correlation_id, "x-schema-version": m.schema_version})


def delivery_count(message: AbstractIncomingMessage) -> int:
    """How often the quorum queue delivered this message before (its ``x-delivery-count``)."""
    value = message.headers.get("x-delivery-count")
    return int(value) if isinstance(value, int | str) else 0


class AmqpPublisher:
    """Publishes with publisher confirms; ``send`` returns only once every message is confirmed."""

    def __init__(self, url: str, names: topology.Names, delivery_limit: int) -> None:
        self.url = url
        self.names = names
        self.delivery_limit = delivery_limit
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def _ready(self) -> AbstractExchange:
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(
                    self.url, timeout=5, reconnect_interval=1,
                    client_properties={"connection_name": f"afisha-relay {self.names.exchange}"})
                self._exchange = None
            if self._exchange is None:
                channel = await self._connection.channel(publisher_confirms=True)
                await topology.declare_all(channel, self.names, self.delivery_limit)
                self._exchange = await topology.declare_exchange(channel, self.names)
            return self._exchange

    async def send(self, messages: Sequence[OutboxMessage]) -> None:
        """Publish every message at once and then wait for all the confirms (pipelined, not
        one round trip per message). The publishes enter the channel in outbox order (the
        channel's lock is first come, first served), which is the order the broker keeps."""
        exchange = await self._ready()
        try:
            await asyncio.gather(*(
                exchange.publish(outbox_message(m), routing_key=m.type, mandatory=False,
                                 timeout=10) for m in messages))
        except Exception:
            self._exchange = None  # declare again on a fresh channel next time
            raise

    def status(self) -> dict[str, Any]:
        connected = self._connection is not None and not self._connection.is_closed
        return {"broker_connected": connected}

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


class AmqpConsumer:
    """Consumes a service's queue in arrival order, acking each message after its commit.

    Messages that are already waiting, or arrive within ``linger_seconds`` of a lone first one,
    are applied together in one transaction (up to ``batch_size``); if that fails they are
    applied one by one. A failing message is requeued after a backoff; on its last allowed
    delivery it is published to the service's dead-letter exchange with the reason in
    ``x-afisha-reason``, then acked.
    """

    def __init__(self, url: str, names: topology.Names, runtime: ConsumerRuntime,
                 prefetch: int, batch_size: int = 50, linger_seconds: float = 0.0) -> None:
        self.url = url
        self.linger = linger_seconds
        self.names = names
        self.runtime = runtime
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.queue_name = names.queue(runtime.service)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.url, timeout=5, reconnect_interval=1,
            client_properties={"connection_name": f"afisha-consumer-{self.runtime.service} "
                                                  f"{self.names.exchange}"})
        channel = await self._connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=self.prefetch)
        await topology.declare_consumer(channel, self.names, self.runtime.service,
                                        self.runtime.delivery_limit)
        self._dlx = await channel.get_exchange(self.names.dlx(self.runtime.service))
        queue = await channel.get_queue(self.queue_name)
        self._worker = asyncio.create_task(self._work(), name=f"consumer-{self.queue_name}")
        await queue.consume(self._arrived.put)
        self._channel = channel

    @property
    def connected(self) -> bool:
        return (self._connection is not None and not self._connection.is_closed
                and self._channel is not None and not self._channel.is_closed)

    async def dead_letter_depth(self) -> int | None:
        if not self.connected or self._channel is None:
            return None
        queue = await self._channel.declare_queue(self.names.dlq(self.runtime.service),
                                                  passive=True, robust=False)
        count = queue.declaration_result.message_count
        return int(count) if count is not None else None

    async def _work(self) -> None:
        while True:
            batch = [await self._arrived.get()]
            if self.linger and self._arrived.empty():  # a burst: let more arrive
                await asyncio.sleep(self.linger)
            while len(batch) < self.batch_size and not self._arrived.empty():
                batch.append(self._arrived.get_nowait())
            try:
                await self._handle_batch(batch)
            except Exception as exc:  # the channel went away: the broker redelivers
                log.warning("could not settle %d message(s): %s", len(batch), exc)

    async def _handle_batch(self, batch: list[AbstractIncomingMessage]) -> None:
        if len(batch) > 1:
            try:
                envelopes = [Envelope.from_json(m.body) for m in batch]
                await self.runtime.process_batch(envelopes)
            except Exception as exc:
                log.info("batch of %d failed (%s); applying one by one", len(batch), exc)
            else:
                # One frame settles the batch: every earlier delivery on this channel has
                # been settled already (batches are handled one after another, in order).
                await batch[-1].ack(multiple=True)
                return
        for message in batch:
            await self._handle(message)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = Envelope.from_json(message.body)
        except ValueError as exc:
            await self._dead_letter(message, f"unreadable envelope: {exc}")
            return
        try:
            await self.runtime.process(envelope)
        except Unhandled as exc:  # kept: back to the queue, never acked unhandled
            log.warning("%s; returned to the queue", exc)
            await message.nack(requeue=True)
            return
        except Exception as exc:
            reason = self.runtime.failed(envelope, exc)
            deliveries = delivery_count(message) + 1
            if deliveries >= self.runtime.delivery_limit:
                await self._dead_letter(message, reason)
                self.runtime.stats.dead_lettered += 1
            else:
                await asyncio.sleep(backoff(deliveries, self.runtime.retry_backoff))
                await message.nack(requeue=True)
            return
        await message.ack()

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        headers = {**message.headers, REASON_HEADER: reason[:1000], QUEUE_HEADER: self.queue_name,
                   "x-afisha-failed-at": datetime.now(UTC).isoformat()}
        copy = aio_pika.Message(
            body=message.body, headers=headers, content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message.message_id,
            correlation_id=message.correlation_id, type=message.type, app_id=message.app_id,
            timestamp=message.timestamp)
        await self._dlx.publish(copy, routing_key=message.routing_key or "", timeout=10)
        await message.ack()
        log.error("dead-lettered %s (%s): %s", message.message_id, message.type, reason)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        if self._connection is not None:
            await self._connection.close()
