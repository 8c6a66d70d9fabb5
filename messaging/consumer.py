"""The consuming side, the same for both transports: inbox, handler, commit; then the ack.

A service's deployment exposes ``message_handlers() -> dict[str, Handler]``. For every message
the runtime opens a unit of work of the consuming service, records the message id in its
``inbox`` (a message already there is a duplicate: the handler is skipped), calls the handler
and commits. Only then does the transport acknowledge the message. Messages that arrive
together are applied in one unit of work; a ``BatchHandler`` gets all of its messages at once.

Nothing is acknowledged without being handled: a message of a type the service has no handler
for raises ``Unhandled`` (the transport keeps it: the embedded relay retries it, RabbitMQ gets it
back), and a consumer whose handlers do not cover ``catalogue.CONSUMES`` does not consume.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Table, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from messaging.catalogue import CONSUMES
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.common.context import bound
from serve.common.logs import get_logger
from serve.common.retry import retry
from storage.common import dead_letter_table, inbox_table, service_metadata

Handler = Callable[[UnitOfWork, Envelope], Awaitable[None]]
Outcome = Literal["applied", "duplicate"]


class Unhandled(LookupError):
    """A message of a type the consuming service has no handler for: it is kept, not acked."""


class BatchHandler:
    """A handler whose effect does not depend on order, so the messages of a batch can be
    written together (one multi-row insert rather than one statement per message)."""

    def __init__(self, many: Callable[[UnitOfWork, list[Envelope]], Awaitable[None]]) -> None:
        self.many = many

    async def __call__(self, uow: UnitOfWork, envelope: Envelope) -> None:
        await self.many(uow, [envelope])

async def _flush_groups(uow: UnitOfWork, grouped: dict[BatchHandler, list[Envelope]]) -> None:
    for batch_handler, group in grouped.items():
        await batch_handler.many(uow, group)
    grouped.clear()


_TABLES: dict[str, tuple[Table, Table]] = {}


def consumer_tables(service: str) -> tuple[Table, Table]:
    """The ``inbox`` and ``dead_letter`` tables of a service's schema."""
    if service not in _TABLES:
        metadata = service_metadata(service)
        _TABLES[service] = (inbox_table(metadata), dead_letter_table(metadata))
    return _TABLES[service]


@dataclass
class ConsumerStats:
    applied: int = 0
    duplicates: int = 0
    failures: int = 0
    dead_lettered: int = 0
    last_error: str | None = None
    by_type: dict[str, int] = field(default_factory=dict)


class ConsumerRuntime:
    def __init__(self, service: str, sessions: async_sessionmaker[AsyncSession],
                 handlers: Mapping[str, Handler], *, delivery_limit: int = 5,
                 retry_backoff: float = 0.2) -> None:
        unbound = sorted(set(handlers) - set(CONSUMES.get(service, ())))
        if unbound:
            raise ValueError(f"the {service} service has handlers for {', '.join(unbound)}, "
                             "which it does not consume: add them to catalogue.CONSUMES")
        self.service = service
        self.sessions = sessions
        self.handlers = dict(handlers)
        self.delivery_limit = delivery_limit
        self.retry_backoff = retry_backoff
        self.stats = ConsumerStats()
        self.log = get_logger(f"{service}.consumer")
        self.inbox, self.dead_letters = consumer_tables(service)
        # Bound routing keys without a handler: until they have one the queue is not consumed.
        self.missing = tuple(k for k in CONSUMES.get(service, ()) if k not in self.handlers)

    def _require_handlers(self, envelopes: list[Envelope]) -> None:
        unhandled = sorted({e.type for e in envelopes if e.type not in self.handlers})
        if unhandled:
            raise Unhandled(f"the {self.service} service has no handler for "
                            f"{', '.join(unhandled)}: the message is kept")

    async def process_batch(self, envelopes: list[Envelope]) -> list[Outcome]:
        """Apply several messages in one transaction (one commit for all): one inbox insert
        for the batch, the handlers in arrival order, a ``BatchHandler`` once for each run of
        its messages (all of them, unless another handler's message comes between). If any
        handler fails nothing of the batch is kept and the error propagates: the caller then
        applies the messages one by one, so only the failing one is retried or dead-lettered."""
        if len(envelopes) == 1:
            return [await self.process(envelopes[0])]
        self._require_handlers(envelopes)
        outcomes: list[Outcome] = []
        async with UnitOfWork(self.sessions, self.service, None) as uow:
            fresh = set(await uow.session.scalars(  # rows apart: the insert compiles once
                pg_insert(self.inbox).on_conflict_do_nothing()
                .returning(self.inbox.c.message_id),
                [{"message_id": e.id, "type": e.type} for e in envelopes]))
            grouped: dict[BatchHandler, list[Envelope]] = {}
            for envelope in envelopes:
                handler = self.handlers[envelope.type]
                if envelope.id not in fresh:  # processed before, or twice in this batch
                    self.log.info("skipped %s %s: already processed", envelope.type, envelope.id)
                    outcomes.append("duplicate")
                    continue
                fresh.discard(envelope.id)
                if isinstance(handler, BatchHandler):
                    grouped.setdefault(handler, []).append(envelope)
                else:
                    await _flush_groups(uow, grouped)  # what arrived earlier applies first
                    uow.correlation_id = envelope.correlation_id
                    with bound(envelope.correlation_id):
                        await handler(uow, envelope)
                outcomes.append("applied")
            await _flush_groups(uow, grouped)
        self._count(envelopes, outcomes)
        return outcomes

    async def process(self, envelope: Envelope) -> Outcome:
        """Apply a message once: inbox row, handler and commit in one transaction."""
        self._require_handlers([envelope])
        async with UnitOfWork(self.sessions, self.service, None) as uow:
            outcome = await self._apply(uow, envelope)
        self._count([envelope], [outcome])
        return outcome

    async def _apply(self, uow: UnitOfWork, envelope: Envelope) -> Outcome:
        """Inbox row and handler inside ``uow``, with the envelope's correlation id bound."""
        handler = self.handlers.get(envelope.type)
        if handler is None:
            raise Unhandled(f"the {self.service} service has no handler for {envelope.type}")
        uow.correlation_id = envelope.correlation_id  # events the handler publishes carry it
        with bound(envelope.correlation_id):
            first = await uow.session.scalar(
                pg_insert(self.inbox)
                .values(message_id=envelope.id, type=envelope.type)
                .on_conflict_do_nothing()
                .returning(self.inbox.c.message_id))
            if first is None:
                self.log.info("skipped %s %s: already processed", envelope.type, envelope.id)
                return "duplicate"
            await handler(uow, envelope)
            self.log.debug("applying %s %s", envelope.type, envelope.id)
        return "applied"

    def _count(self, envelopes: list[Envelope], outcomes: list[Outcome]) -> None:
        for envelope, outcome in zip(envelopes, outcomes, strict=True):
            if outcome == "applied":
                self.stats.applied += 1
                self.stats.by_type[envelope.type] = self.stats.by_type.get(envelope.type, 0) + 1
            else:
                self.stats.duplicates += 1

    def failed(self, envelope: Envelope, exc: BaseException) -> str:
        """Count a failed attempt; the reason as it is recorded with a dead letter."""
        reason = f"{type(exc).__name__}: {exc}"
        self.stats.failures += 1
        self.stats.last_error = reason
        with bound(envelope.correlation_id):
            self.log.warning("handling %s %s failed: %s", envelope.type, envelope.id, reason)
        return reason

    async def deliver(self, envelopes: list[Envelope]) -> None:
        """Embedded transport: apply the messages in order, in one transaction when they all
        succeed; otherwise one by one, retrying with backoff; a message that fails
        ``delivery_limit`` times goes to the ``dead_letter`` table. A message without a handler
        raises ``Unhandled`` to the publisher's relay, which keeps it in its outbox."""
        self._require_handlers(envelopes)
        try:
            await self.process_batch(envelopes)
            return
        except Exception as exc:
            self.log.info("batch of %d failed (%s); applying one by one", len(envelopes), exc)
        for envelope in envelopes:
            await self._process_or_dead_letter(envelope)

    async def _process_or_dead_letter(self, envelope: Envelope) -> None:
        reasons: list[str] = []
        try:
            await retry(functools.partial(self.process, envelope), attempts=self.delivery_limit,
                        base=self.retry_backoff,
                        on_failure=lambda _, exc: reasons.append(self.failed(envelope, exc)))
        except Exception:
            await self.dead_letter(envelope, reasons[-1], len(reasons))

    async def dead_letter(self, envelope: Envelope, reason: str, attempts: int) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(insert(self.dead_letters).values(
                message_id=envelope.id, type=envelope.type,
                envelope=envelope.model_dump(mode="json"), reason=reason, attempts=attempts))
        self.stats.dead_lettered += 1
        with bound(envelope.correlation_id):
            self.log.error("dead-lettered %s %s after %d attempts: %s",
                           envelope.type, envelope.id, attempts, reason)
