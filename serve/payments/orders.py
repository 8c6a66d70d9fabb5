"""What each paid registration costs, recorded from ``registration.created``.

The payment service keeps its own copy, so paying never waits on the Event service.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from serve.common.errors import NotFound
from serve.payments.domain import Order
from serve.payments.service import Registration
from storage import bulk
from storage.payment import orders

TERMS = ("registration_id", "event_id", "organization_id", "user_id", "total", "currency",
         "prepayment", "starts_at")


async def record(session: AsyncSession, data: dict[str, Any],
                 starts_at: datetime | None = None) -> Registration | None:
    """Keep the terms of a paid registration (``None`` for a free one); ``starts_at`` (the
    event's start) sets the remainder's deadline of a prepaid registration."""
    if data["amount"] <= 0:
        return None
    await record_many(session, [(data, starts_at)])
    return await load(session, data["registration_id"])


async def record_many(session: AsyncSession,
                      items: list[tuple[dict[str, Any], datetime | None]]) -> None:
    """The terms of several paid registrations in one insert (ones already kept are left)."""
    await session.execute(bulk.insert(orders, TERMS, "ON CONFLICT DO NOTHING"),
                          bulk.params(orders, TERMS, [{
        "registration_id": uuid.UUID(data["registration_id"]),
        "event_id": uuid.UUID(data["event_id"]),
        "organization_id": uuid.UUID(data["organization_id"]),
        "user_id": uuid.UUID(data["user_id"]), "total": data["amount"],
        "currency": data["currency"], "prepayment": data.get("prepayment_amount"),
        "starts_at": starts_at} for data, starts_at in items]))


async def reschedule(session: AsyncSession, event_id: str, starts_at: datetime) -> int:
    """The event moved: remainder deadlines of its orders follow its new start."""
    result = await session.execute(update(orders).where(orders.c.event_id == uuid.UUID(event_id))
                                   .values(starts_at=starts_at))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def load(session: AsyncSession, registration_id: str) -> Registration:
    try:
        key = uuid.UUID(str(registration_id))
    except ValueError as exc:
        raise NotFound(f"{registration_id!r} is not a registration id") from exc
    row = (await session.execute(select(orders).where(orders.c.registration_id == key)))\
        .mappings().first()
    if row is None:
        raise NotFound(f"registration {registration_id} has nothing to pay (free or unknown)",
                       slug="no-order")
    return Registration(
        registration_id=str(row["registration_id"]), event_id=str(row["event_id"]),
        organization_id=str(row["organization_id"]), user_id=str(row["user_id"]),
        order=Order(total=row["total"], currency=row["currency"], prepayment=row["prepayment"]))
