"""Messaging inside one service replica: its outbox relay and its consumer, on either transport.

``ServiceBase`` builds one ``MessagingRuntime`` per replica and starts it on the replica's
event loop. ``deliver`` is the entry point of the embedded transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import APP_NAME, Settings
from messaging import topology
from messaging.catalogue import CONSUMES, PRODUCERS
from messaging.consumer import ConsumerRuntime, Handler
from messaging.embedded import Deliver, EmbeddedTransport
from messaging.envelope import Envelope
from messaging.relay import Relay
from messaging.transport import Transport
from serve.common.logs import get_logger
from serve.common.retry import retry


class MessagingRuntime:
    def __init__(self, service: str, settings: Settings,
                 sessions: async_sessionmaker[AsyncSession], handlers: Mapping[str, Handler],
                 embedded_deliver: Deliver | None = None) -> None:
        self.service = service
        self.settings = settings
        self.transport_name = settings.transport
        self.log = get_logger(f"{service}.messaging")
        self.names = topology.Names(settings.amqp_exchange)
        self.consumer = ConsumerRuntime(
            service, sessions, handlers, delivery_limit=settings.message_delivery_limit,
            retry_backoff=settings.message_retry_backoff_seconds
        ) if service in CONSUMES else None
        self.relay = Relay(
            service, sessions, self._transport(embedded_deliver),
            database_url=settings.database_url_for(service),
            poll_seconds=settings.outbox_poll_seconds, batch_size=settings.outbox_batch_size,
            listening_poll_seconds=settings.listening_poll_seconds,
            retry_backoff=settings.message_retry_backoff_seconds,
            retention_hours=settings.outbox_retention_hours,
            linger_seconds=settings.outbox_linger_ms / 1000,
        ) if service in PRODUCERS.values() else None
        self.amqp_consumer: Any = None
        self._starter: asyncio.Task[None] | None = None

    def _transport(self, embedded_deliver: Deliver | None) -> Transport:
        if self.settings.amqp_url:
            from messaging.amqp import AmqpPublisher

            return AmqpPublisher(self.settings.amqp_url, self.names,
                                 self.settings.message_delivery_limit)
        if embedded_deliver is None:
            from messaging.embedded import serve_deliver

            embedded_deliver = serve_deliver(APP_NAME)
        return EmbeddedTransport(embedded_deliver)

    def start(self) -> None:
        """Start the relay and, on RabbitMQ, the consumer (idempotent; needs a running loop)."""
        if self._starter is not None:
            return
        if self.relay is not None:
            self.relay.start()
        self._starter = asyncio.create_task(self._start_consumer())

    async def _start_consumer(self) -> None:
        if self.consumer is None or not self.settings.amqp_url:
            return
        if self.consumer.missing:  # its queue keeps them until a version handles them
            self.log.warning("not consuming %s: no handler for %s", self.names.queue(self.service),
                             ", ".join(self.consumer.missing))
            return
        from messaging.amqp import AmqpConsumer

        url, runtime = self.settings.amqp_url, self.consumer

        async def start() -> AmqpConsumer:
            consumer = AmqpConsumer(url, self.names, runtime, self.settings.amqp_prefetch,
                                    batch_size=self.settings.consumer_batch_size,
                                    linger_seconds=self.settings.consumer_linger_ms / 1000)
            try:
                await consumer.start()
            except Exception:
                await consumer.close()
                raise
            return consumer

        self.amqp_consumer = await retry(
            start, attempts=None, base=0.4,
            on_failure=lambda attempt, exc: self.log.warning(
                "consumer could not start (attempt %d): %s", attempt, exc))

    async def deliver(self, envelopes: list[Envelope]) -> None:
        if self.consumer is None:
            raise LookupError(f"the {self.service} service consumes no events")
        await self.consumer.deliver(envelopes)

    async def status(self) -> dict[str, Any]:
        """Outbox lag, dead letters and consumer state; ``status`` DOWN when it is stuck."""
        body: dict[str, Any] = {"transport": self.transport_name,
                                "running": self._starter is not None}
        healthy = True
        if self.relay is not None:
            body["outbox"] = {**await self.relay.lag(), **self.relay.status()}
            healthy = self.relay.failures == 0
        if self.consumer is not None:
            stats = self.consumer.stats
            consumer: dict[str, Any] = {
                "applied": stats.applied, "duplicates": stats.duplicates,
                "failures": stats.failures, "dead_lettered": stats.dead_lettered,
                "last_error": stats.last_error, "handlers": sorted(self.consumer.handlers),
                "unhandled": list(self.consumer.missing)}
            if self.settings.amqp_url and self._starter is not None:
                connected = self.amqp_consumer is not None and self.amqp_consumer.connected
                consumer["connected"] = connected
                consumer["queue"] = self.names.queue(self.service)
                body["dead_letters"] = (await self.amqp_consumer.dead_letter_depth()
                                        if connected else None)
                healthy = healthy and connected
            elif not self.settings.amqp_url:
                body["dead_letters"] = await self._dead_letter_rows()
            body["consumer"] = consumer
        body["status"] = "UP" if healthy else "DOWN"
        return body

    async def _dead_letter_rows(self) -> int:
        assert self.consumer is not None
        async with self.consumer.sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(self.consumer.dead_letters))
        return int(count or 0)

    async def close(self) -> None:
        if self._starter is not None:
            self._starter.cancel()
        if self.relay is not None:
            await self.relay.close()
        if self.amqp_consumer is not None:
            await self.amqp_consumer.close()
