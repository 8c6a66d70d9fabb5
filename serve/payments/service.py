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
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from messaging.outbox import UnitOfWork
from serve.common import paging
from serve.common.errors import Conflict, NotFound
from serve.payments import methods, refunds, remainder
from serve.payments.domain import (
    CAPTURED,
    Kind,
    Order,
    Status,
    advance,
    amount_due,
)
from serve.payments.providers import Notification, Provider
from serve.payments.rows import event_data, load, parse_id
from storage.payment import payments, webhook_events


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
                         kind: Kind, save_method: bool = False,
                         method_id: str | None = None) -> dict[str, Any]:
    """The live payment of this kind for the registration, created when there is none;
    ``save_method`` asks the provider to keep the payer's method, ``method_id`` (one of the
    payer's saved methods) charges it without a payer step."""
    session = uow.session
    existing = (await session.execute(
        select(payments).where(payments.c.registration_id == uuid.UUID(reg.registration_id))
        .with_for_update())).mappings().all()
    for row in existing:
        if row["kind"] == kind.value and row["status"] != Status.FAILED.value:
            if row["status"] == Status.PENDING.value and (save_method or method_id):
                return await _pay_pending_with_method(uow, provider, row, save_method,
                                                      method_id)
            return view(row)
    if kind is Kind.REMAINDER:
        await remainder.check_payable(session, reg.registration_id)
    captured = {Kind(r["kind"]): r["captured_amount"] for r in existing
                if Status(r["status"]) in CAPTURED}
    amount = amount_due(reg.order, kind, captured)
    method = None
    if method_id is not None:
        method = await methods.own(session, reg.user_id, method_id, provider.name)
    payment_id = uuid.uuid4()
    issued = await provider.create_payment(
        session, str(payment_id), amount, reg.order.currency,
        f"registration {reg.registration_id}", save_method=save_method and method is None,
        method_id=method["provider_method_id"] if method else None)
    values = {
        "id": payment_id, "registration_id": uuid.UUID(reg.registration_id),
        "event_id": uuid.UUID(reg.event_id), "organization_id": uuid.UUID(reg.organization_id),
        "user_id": uuid.UUID(reg.user_id), "kind": kind.value, "status": Status.PENDING.value,
        "amount": amount, "currency": reg.order.currency, "provider": provider.name,
        "provider_payment_id": issued.provider_payment_id,
        "confirmation_url": issued.confirmation_url,
        "save_method": save_method and method is None,
        "payment_method_id": method["id"] if method else None,
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
    if issued.succeeded:  # a saved method: paid at once
        await session.execute(update(payments).where(payments.c.id == payment_id).values(
            status=Status.COMPLETED.value, captured_amount=amount, updated_at=func.now()))
        row = await load(session, str(payment_id))
        uow.publish("payment.completed", event_data(row), aggregate_id=str(payment_id))
    return view(row)


async def _pay_pending_with_method(uow: UnitOfWork, provider: Provider, row: RowMapping,
                                   save_method: bool, method_id: str | None) -> dict[str, Any]:
    """A pending payment the payer now pays with a saved method (charged at once), or asks to
    keep its method (kept when the provider has not issued it yet: the sandbox, or a payment
    its payer has not opened)."""
    session = uow.session
    if method_id is None:
        if row["provider_payment_id"] is not None and not getattr(provider, "issues_locally",
                                                                  False):
            raise Conflict("this payment was issued without keeping its method; pay it, and "
                           "ask to keep the method on the next one", slug="payment-issued")
        await session.execute(update(payments).where(payments.c.id == row["id"]).values(
            save_method=True, updated_at=func.now()))
        return view(await load(session, str(row["id"])))
    method = await methods.own(session, str(row["user_id"]), method_id, provider.name)
    issued = await provider.create_payment(
        session, f"{row['id']}:{method['id']}", row["amount"], row["currency"],
        f"registration {row['registration_id']}", method_id=method["provider_method_id"])
    changes: dict[str, Any] = {"provider_payment_id": issued.provider_payment_id,
                               "confirmation_url": issued.confirmation_url,
                               "payment_method_id": method["id"], "updated_at": func.now()}
    if issued.succeeded:
        changes |= {"status": Status.COMPLETED.value, "captured_amount": row["amount"]}
    await session.execute(update(payments).where(payments.c.id == row["id"]).values(**changes))
    paid = await load(session, str(row["id"]))
    if issued.succeeded:
        uow.publish("payment.completed", event_data(paid), aggregate_id=str(row["id"]))
    return view(paid)


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
        if note.method is not None and row["save_method"]:
            await methods.keep(session, row["user_id"], provider.name, note.method)
    if new is Status.FAILED:
        changes["failure_reason"] = note.reason or "declined by the provider"
    await session.execute(update(payments).where(payments.c.id == row["id"]).values(**changes))
    if new in (Status.COMPLETED, Status.FAILED):
        name = "payment.completed" if new is Status.COMPLETED else "payment.failed"
        extra = {} if new is Status.COMPLETED else {"reason": changes["failure_reason"]}
        uow.publish(name, event_data(row, **extra), aggregate_id=str(row["id"]))
    return "applied"


async def refund(sessions: async_sessionmaker[AsyncSession], providers: dict[str, Provider],
                 payment_id: str, amount: int | None, reason: str | None,
                 cause: str) -> dict[str, Any]:
    """Refund part or all of what is left of the capture, once per ``cause``
    (``serve.payments.refunds``); concurrent refunds serialize on the payment's row."""
    async with sessions() as session, session.begin():
        intent, _ = await refunds.request(session, parse_id(payment_id), amount, reason, cause)
    return await refunds.execute(sessions, providers, intent["id"])


async def refund_event(uow: UnitOfWork, event_id: str) -> int:
    """Event cancelled: record a refund of every capture, fail every unpaid payment. Returns
    the refunds recorded (a redelivery records none); ``refunds.resume`` makes them."""
    return await _settle(uow, payments.c.event_id == uuid.UUID(event_id),
                         "the event was cancelled", f"event-cancelled:{event_id}")


async def refund_registration(uow: UnitOfWork, registration_id: str, reason: str) -> int:
    """Registration cancelled (by the attendee, or a late payment found no seat): record a
    refund of what is still captured, fail what is unpaid. Returns the refunds recorded."""
    return await _settle(uow, payments.c.registration_id == uuid.UUID(registration_id), reason,
                         f"registration-cancelled:{registration_id}")


async def _settle(uow: UnitOfWork, which: Any, reason: str, cause: str) -> int:
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
            try:
                _, created = await refunds.request(session, row["id"], None, reason, cause)
            except Conflict:  # what is left is already being refunded for another cause
                continue
            made += created
    return made
