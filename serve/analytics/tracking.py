"""Analytics' consumer effect: every consumed domain event becomes one time-series row."""

from __future__ import annotations

from sqlalchemy import insert

from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from storage.analytics import domain_events


async def record_domain_event(uow: UnitOfWork, envelope: Envelope) -> None:
    data = envelope.data
    await uow.session.execute(insert(domain_events).values(
        message_id=envelope.id, type=envelope.type, producer=envelope.producer,
        occurred_at=envelope.occurred_at, correlation_id=envelope.correlation_id,
        event_id=data.get("event_id"), organization_id=data.get("organization_id"),
        user_id=data.get("user_id") or data.get("requester_id") or data.get("owner_id"),
        data=data))
