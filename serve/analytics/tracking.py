"""Analytics' consumer effect: every consumed domain event becomes one time-series row."""

from __future__ import annotations

from sqlalchemy import insert

from messaging.consumer import BatchHandler
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from storage.analytics import domain_events


async def record_domain_events(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    await uow.session.execute(insert(domain_events), [{
        "message_id": e.id, "type": e.type, "producer": e.producer,
        "occurred_at": e.occurred_at, "correlation_id": e.correlation_id,
        "event_id": e.data.get("event_id"), "organization_id": e.data.get("organization_id"),
        "user_id": (e.data.get("user_id") or e.data.get("requester_id")
                    or e.data.get("owner_id")),
        "data": e.data} for e in envelopes])


# One row per event whatever the order: a batch of them is one multi-row insert.
record_domain_event = BatchHandler(record_domain_events)
