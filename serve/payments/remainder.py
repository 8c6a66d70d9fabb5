"""The remainder of a prepaid registration and its deadline.

Policy: the remainder is due ``AFISHA_REMAINDER_DUE_HOURS_BEFORE_START`` hours before the event
starts. ``AFISHA_REMAINDER_REMINDER_HOURS`` before that deadline ``payment.remainder.due`` is
published once (the reminder). At the deadline ``payment.remainder.overdue`` is published once,
any pending remainder payment fails, and the remainder can no longer be paid online: the
registration stays confirmed with its balance due, and the prepayment is kept; the attendee
settles the balance with the organizer at the door.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.outbox import UnitOfWork
from serve.common.errors import Conflict
from serve.payments.domain import CAPTURED, Kind, Status
from storage.payment import orders, payments


def deadline(starts_at: datetime, due_hours: int) -> datetime:
    return starts_at - timedelta(hours=due_hours)


async def check_payable(session: AsyncSession, registration_id: str) -> None:
    """A remainder past its deadline is refused (409)."""
    overdue = await session.scalar(select(orders.c.remainder_overdue_at).where(
        orders.c.registration_id == uuid.UUID(registration_id)))
    if overdue is not None:
        raise Conflict("the remainder's deadline has passed; the balance is settled at the door",
                       slug="remainder-overdue")


def _captured(kind: Kind) -> Any:
    return exists().where(and_(payments.c.registration_id == orders.c.registration_id,
                               payments.c.kind == kind.value,
                               payments.c.status.in_([s.value for s in CAPTURED])))


async def sweep(uow: UnitOfWork, now: datetime, due_hours: int, remind_hours: int) -> int:
    """Publish due reminders and overdue notices whose time has come; returns how many."""
    session = uow.session
    rows = (await session.execute(
        select(orders).where(orders.c.starts_at.is_not(None), orders.c.prepayment.is_not(None),
                             orders.c.remainder_overdue_at.is_(None),
                             _captured(Kind.PREPAYMENT), ~_captured(Kind.REMAINDER))
        .with_for_update(skip_locked=True))).mappings().all()
    published = 0
    for row in rows:
        due_at = deadline(row["starts_at"], due_hours)
        data = {"registration_id": str(row["registration_id"]),
                "event_id": str(row["event_id"]), "user_id": str(row["user_id"]),
                "amount": row["total"] - row["prepayment"], "currency": row["currency"],
                "due_at": due_at.isoformat()}
        key = str(row["registration_id"])
        where = orders.c.registration_id == row["registration_id"]
        if now >= due_at:
            await _fail_pending_remainder(uow, row["registration_id"])
            await session.execute(update(orders).where(where).values(remainder_overdue_at=now))
            uow.publish("payment.remainder.overdue", data, aggregate_id=key)
            published += 1
        elif now >= due_at - timedelta(hours=remind_hours) and not row["remainder_reminded_at"]:
            await session.execute(update(orders).where(where).values(remainder_reminded_at=now))
            uow.publish("payment.remainder.due", data, aggregate_id=key)
            published += 1
    return published


async def _fail_pending_remainder(uow: UnitOfWork, registration_id: uuid.UUID) -> None:
    from serve.payments.service import event_data

    pending = (await uow.session.execute(select(payments).where(
        payments.c.registration_id == registration_id, payments.c.kind == Kind.REMAINDER.value,
        payments.c.status.in_([Status.PENDING.value, Status.PROCESSING.value]))
        .with_for_update())).mappings().all()
    for row in pending:
        reason = "the remainder's deadline passed"
        await uow.session.execute(update(payments).where(payments.c.id == row["id"]).values(
            status=Status.FAILED.value, failure_reason=reason))
        uow.publish("payment.failed", event_data(row, reason=reason), aggregate_id=str(row["id"]))
