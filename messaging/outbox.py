"""The unit of work: a state change and the domain events it causes commit in one transaction.

    async with UnitOfWork(sessions, producer="event", ctx=ctx) as uow:
        uow.session.add(...)
        uow.publish("event.published", {...}, aggregate_id=event_id)
        # commit happens on leaving the block without an exception

Events are validated against the catalogue when published, written to the service's ``outbox``
table in the same transaction, and a ``NOTIFY`` on the outbox channel (delivered by PostgreSQL
only if the transaction commits) wakes the relay. Nothing is ever sent before the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import schema_of
from messaging import catalogue
from messaging.envelope import Envelope
from serve.common.context import RequestContext, correlation_id_var
from storage import bulk
from storage.common import outbox_table, service_metadata

_OUTBOX_TABLES: dict[str, Table] = {}


def outbox_for(service: str) -> Table:
    """The ``outbox`` table of a service's schema (one Table object per service)."""
    if service not in _OUTBOX_TABLES:
        _OUTBOX_TABLES[service] = outbox_table(service_metadata(service))
    return _OUTBOX_TABLES[service]


def channel_of(service: str) -> str:
    """The LISTEN/NOTIFY channel that announces new outbox rows of a service."""
    return f"afisha_outbox_{schema_of(service)}"


OUTBOX = ("message_id", "type", "aggregate_id", "envelope")


class UnitOfWork:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], producer: str,
                 ctx: RequestContext | None = None,
                 after_commit: Callable[[], None] | None = None) -> None:
        self._sessions = sessions
        self.producer = producer
        self.correlation_id = ctx.correlation_id if ctx else correlation_id_var.get()
        self._after_commit = after_commit
        self._pending: list[Envelope] = []
        self._aggregates: list[str] = []
        self.session: AsyncSession

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._sessions()
        await self.session.begin()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                await self.commit()
            else:
                await self.session.rollback()
        finally:
            await self.session.close()

    def publish(self, event_type: str, data: dict[str, Any], *, aggregate_id: str) -> Envelope:
        """Queue a domain event; it is written with the transaction's other changes."""
        payload = catalogue.validate(event_type, data)
        envelope = Envelope(type=event_type, producer=self.producer,
                            correlation_id=self.correlation_id, data=payload)
        self._pending.append(envelope)
        self._aggregates.append(aggregate_id)
        return envelope

    async def commit(self) -> None:
        if self._pending:  # one statement for the messages, in order (ids follow it)
            await self.session.execute(bulk.insert(outbox_for(self.producer), OUTBOX), {
                "message_id": [env.id for env in self._pending],
                "type": [env.type for env in self._pending],
                "aggregate_id": self._aggregates,
                # already JSON text: bulk.params would encode it a second time
                "envelope": [env.model_dump_json() for env in self._pending]})
            await self.session.execute(text(f"NOTIFY {channel_of(self.producer)}"))
        await self.session.commit()
        published = bool(self._pending)
        self._pending, self._aggregates = [], []
        if published and self._after_commit:
            self._after_commit()
