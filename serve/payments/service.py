"""Payment use cases over a unit of work: create, provider reports, refunds, event cancellation.

Money invariants are kept by the database as well as by the code: a payment row is locked
(``FOR UPDATE``) for every change of its amounts, refunds are checked against what is left of
the capture under that lock, and a CHECK constraint refuses ``refunded > captured`` anyway.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.outbox import UnitOfWork
from serve.common import paging
from serve.common.errors import NotFound
from serve.payments import remainder
from serve.payments.domain import (
    CAPTURED,
    Kind,
    Order,
    Status,
    advance,
    amount_due,
    refund_amount,
    status_after_refund,
    transition,
)
from serve.payments.providers import Notification, Provider
from storage.payment import payments, refunds, webhook_events


@dataclass(frozen=True, slots=True)
class Registration:
    """What the Event service says a registration costs (registration.created payload)."""

    registration_id: str
    event_id: str
    organization_id: str
    user_id: str
    order: Order


def view(row: RowMapping) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "registration_id": str(row["registration_id"]),
        "event_id": str(row["event_id"]), "user_id": str(row["user_id"]),
        "kind": row["kind"], "status": row["status"],
        "amount": {"amount": row["amount"], "currency": row["currency"]},
        "captured": {"amount": row["captured_amount"], "currency": row["currency"]},
        "refunded": {"amount": row["refunded_amount"], "currency": row["currency"]},
        "provider": row["provider"], "confirmation_url": row["confirmation_url"],
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
    }


def event_data(row: RowMapping, **extra: Any) -> dict[str, Any]:
    return {"payment_id": str(row["id"]), "registration_id": str(row["registration_id"]),
            "event_id": str(row["event_id"]), "user_id": str(row["user_id"]),
            "kind": row["kind"], "amount": row["amount"], "currency": row["currency"], **extra}


async def load(session: AsyncSession, payment_id: str, *, lock: bool = False) -> RowMapping:
    query = select(payments).where(payments.c.id == parse_id(payment_id))
    row = (await session.execute(query.with_for_update() if lock else query)).mappings().first()
    if row is None:
        raise NotFound(f"payment {payment_id} does not exist")
    return row


def parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound(f"{value!r} is not an id") from exc


async def event_payments(session: AsyncSession, event_id: uuid.UUID, cursor: str | None,
                         limit: int) -> dict[str, Any]:
    """One page of an event's payments (oldest first) and how many are in each status."""
    query = paging.keyset(select(payments).where(payments.c.event_id == event_id),
                          payments.c.created_at, payments.c.id, cursor, limit)
    rows = (await session.execute(query)).mappings().all()
    counts = (await session.execute(
        select(payments.c.status, func.count()).where(payments.c.event_id == event_id)
        .group_by(payments.c.status))).all()
    page, next_cursor = paging.split(rows, limit, "created_at", "id")
    return {"items": [view(r) for r in page], "next_cursor": next_cursor,
            "by_status": {status: n for status, n in counts}}


async def create_payment(uow: UnitOfWork, provider: Provider, reg: Registration,
                         kind: Kind) -> dict[str, Any]:
    """The live payment of this kind for the registration, created when there is none."""
    session = uow.session
    existing = (await session.execute(
        select(payments).where(payments.c.registration_id == uuid.UUID(reg.registration_id))
        .with_for_update())).mappings().all()
    for row in existing:
        if row["kind"] == kind.value and row["status"] != Status.FAILED.value:
            return view(row)
    if kind is Kind.REMAINDER:
        await remainder.check_payable(session, reg.registration_id)
    captured = {Kind(r["kind"]): r["captured_amount"] for r in existing
                if Status(r["status"]) in CAPTURED}
    amount = amount_due(reg.order, kind, captured)
    payment_id = uuid.uuid4()
    issued = await provider.create_payment(session, str(payment_id), amount, reg.order.currency,
                                           f"registration {reg.registration_id}")
    values = {
        "id": payment_id, "registration_id": uuid.UUID(reg.registration_id),
        "event_id": uuid.UUID(reg.event_id), "organization_id": uuid.UUID(reg.organization_id),
        "user_id": uuid.UUID(reg.user_id), "kind": kind.value, "status": Status.PENDING.value,
        "amount": amount, "currency": reg.order.currency, "provider": provider.name,
        "provider_payment_id": issued.provider_payment_id,
        "confirmation_url": issued.confirmation_url,
    }
    try:
        async with session.begin_nested():
            await session.execute(insert(payments).values(**values))
    except IntegrityError:
        # A concurrent request created it first: answer with that one.
        row = (await session.execute(select(payments).where(and_(
            payments.c.registration_id == uuid.UUID(reg.registration_id),
            payments.c.kind == kind.value, payments.c.status != Status.FAILED.value,
        )))).mappings().one()
        return view(row)
    row = await load(session, str(payment_id))
    uow.publish("payment.created", event_data(
        row, confirmation_url=row["confirmation_url"]), aggregate_id=str(payment_id))
    return view(row)


async def apply_notification(uow: UnitOfWork, provider: Provider, note: Notification,
                             payload: dict[str, Any]) -> str:
    """Apply a verified provider report once: "applied", "duplicate" or "stale"."""
    session = uow.session
    first = await session.execute(
        pg_insert(webhook_events).values(provider=provider.name, event_id=note.event_id,
                                         payload=payload)
        .on_conflict_do_nothing().returning(webhook_events.c.event_id))
    if first.first() is None:
        return "duplicate"
    row = (await session.execute(
        select(payments).where(and_(payments.c.provider == provider.name,
                                    payments.c.provider_payment_id == note.provider_payment_id))
        .with_for_update())).mappings().first()
    if row is None:
        raise NotFound(f"no payment {note.provider_payment_id} at {provider.name}")
    new = advance(Status(row["status"]), note.status)
    if new is None:
        return "stale"
    changes: dict[str, Any] = {"status": new.value, "updated_at": func.now()}
    if new is Status.COMPLETED:
        changes["captured_amount"] = row["amount"]
    if new is Status.FAILED:
        changes["failure_reason"] = note.reason or "declined by the provider"
    await session.execute(update(payments).where(payments.c.id == row["id"]).values(**changes))
    if new in (Status.COMPLETED, Status.FAILED):
        name = "payment.completed" if new is Status.COMPLETED else "payment.failed"
        extra = {} if new is Status.COMPLETED else {"reason": changes["failure_reason"]}
        uow.publish(name, event_data(row, **extra), aggregate_id=str(row["id"]))
    return "applied"


async def refund(uow: UnitOfWork, provider: Provider, payment_id: str, amount: int | None,
                 reason: str | None) -> dict[str, Any]:
    """Refund part or all of what is left of the capture; concurrent refunds serialize."""
    session = uow.session
    row = await load(session, payment_id, lock=True)
    current = Status(row["status"])
    if current not in CAPTURED:
        transition(current, Status.REFUNDED)  # raises the 409 that explains why
    value = refund_amount(row["captured_amount"], row["refunded_amount"], amount)
    refund_id = uuid.uuid4()
    issued = await provider.refund(session, str(refund_id), str(row["provider_payment_id"]),
                                   value, row["currency"])
    refunded_total = row["refunded_amount"] + value
    new = transition(current, status_after_refund(row["captured_amount"], refunded_total))
    await session.execute(update(payments).where(payments.c.id == row["id"]).values(
        refunded_amount=refunded_total, status=new.value, updated_at=func.now()))
    await session.execute(insert(refunds).values(
        id=refund_id, payment_id=row["id"], amount=value, currency=row["currency"],
        status="succeeded" if issued.succeeded else "pending", reason=reason,
        provider_refund_id=issued.provider_refund_id))
    uow.publish("payment.refunded", event_data(
        row, refund_id=str(refund_id), refunded_amount=value,
        fully_refunded=new is Status.REFUNDED), aggregate_id=str(row["id"]))
    return {"id": str(refund_id), "payment_id": str(row["id"]),
            "amount": {"amount": value, "currency": row["currency"]},
            "status": "succeeded" if issued.succeeded else "pending", "reason": reason,
            "payment_status": new.value}


async def refund_event(uow: UnitOfWork, providers: dict[str, Provider], event_id: str) -> int:
    """Event cancelled: refund every capture, fail every unpaid payment. Returns refunds made."""
    return await _settle(uow, providers, payments.c.event_id == uuid.UUID(event_id),
                         "the event was cancelled")


async def refund_registration(uow: UnitOfWork, providers: dict[str, Provider],
                              registration_id: str, reason: str) -> int:
    """Registration cancelled (by the attendee, or a late payment found no seat): refund what
    is still captured, fail what is unpaid. Returns refunds made; a repeat makes none."""
    return await _settle(uow, providers,
                         payments.c.registration_id == uuid.UUID(registration_id), reason)


async def _settle(uow: UnitOfWork, providers: dict[str, Provider], which: Any,
                  reason: str) -> int:
    session = uow.session
    rows = (await session.execute(select(payments).where(which)
                                  .order_by(payments.c.created_at).with_for_update())
            ).mappings().all()
    made = 0
    for row in rows:
        status = Status(row["status"])
        if status in (Status.PENDING, Status.PROCESSING):
            await session.execute(update(payments).where(payments.c.id == row["id"]).values(
                status=Status.FAILED.value, failure_reason=reason, updated_at=func.now()))
            uow.publish("payment.failed", event_data(row, reason=reason),
                        aggregate_id=str(row["id"]))
        elif status in CAPTURED and row["refunded_amount"] < row["captured_amount"]:
            await refund(uow, providers[row["provider"]], str(row["id"]), None, reason)
            made += 1
    return made
