"""Refunds that reach the provider at most once per cause, whatever crashes or is redelivered.

A refund is three steps, each safe to repeat:

1. **Intent** (``request``, one short transaction under the payment's row lock): a row of
   ``refunds`` with status ``requested``, its id derived from the payment and the *cause* (an
   event's cancellation, a registration's, an API call's ``Idempotency-Key``). The same cause
   finds the same row, so a redelivered event or a retried request never asks twice. Amounts
   still requested count as spent when the next intent checks what is left of the capture.
2. **Provider call** (``execute``), outside any transaction, with the intent's id as the
   provider's idempotence key: the provider answers a repeat with the refund it already made.
3. **Settlement** (``settle``, one transaction per payment): the intent becomes ``succeeded``
   or ``pending``, the payment's refunded amount and status move, ``payment.refunded`` is
   published. An intent that is no longer ``requested`` is left alone.

A crash between the steps leaves ``requested`` intents; ``resume`` (the payment service's
sweep) carries them on. A provider that refuses a refund marks its intent ``failed`` with the
reason and gives its amount back.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from messaging.outbox import UnitOfWork
from serve.common.errors import ProblemError, ServiceUnavailable
from serve.payments.domain import Status, refund_amount, status_after_refund, transition
from serve.payments.providers import Provider, ProviderRefund
from serve.payments.rows import event_data, load
from storage.payment import payments
from storage.payment import refunds as refunds_table

NAMESPACE = uuid.UUID("5d0c1f0e-4a5b-4f59-9a57-7d1f6b0a2e31")
CAPTURED = (Status.COMPLETED, Status.PARTIALLY_REFUNDED)


def refund_id_of(payment_id: uuid.UUID, cause: str) -> uuid.UUID:
    """The id (and provider idempotence key) of the refund of ``payment_id`` for ``cause``."""
    return uuid.uuid5(NAMESPACE, f"{payment_id}:{cause}")


async def request(session: AsyncSession, payment_id: uuid.UUID, amount: int | None,
                  reason: str | None, cause: str) -> tuple[RowMapping, bool]:
    """The intent to refund ``amount`` (``None``: all that is left) for ``cause``, recorded in
    the caller's transaction, and True; or the intent already recorded for that cause, and
    False."""
    row = await load(session, str(payment_id), lock=True)
    refund_id = refund_id_of(row["id"], cause)
    existing = await _refund(session, refund_id)
    if existing is not None:
        return existing, False
    current = Status(row["status"])
    if current not in CAPTURED:
        transition(current, Status.REFUNDED)  # raises the 409 that explains why
    requested = await session.scalar(
        select(func.coalesce(func.sum(refunds_table.c.amount), 0)).where(
            refunds_table.c.payment_id == row["id"], refunds_table.c.status == "requested"))
    value = refund_amount(row["captured_amount"], row["refunded_amount"] + int(requested or 0),
                          amount)
    await session.execute(pg_insert(refunds_table).values(
        id=refund_id, payment_id=row["id"], amount=value, currency=row["currency"],
        status="requested", reason=reason, cause=cause).on_conflict_do_nothing())
    made = await _refund(session, refund_id)
    assert made is not None
    return made, True


async def _refund(session: AsyncSession, refund_id: uuid.UUID, *,
                  lock: bool = False) -> RowMapping | None:
    query = select(refunds_table).where(refunds_table.c.id == refund_id)
    return (await session.execute(query.with_for_update() if lock else query)).mappings().first()


async def execute(sessions: async_sessionmaker[AsyncSession], providers: dict[str, Provider],
                  refund_id: uuid.UUID) -> dict[str, Any]:
    """Ask the provider for a recorded intent (no transaction is open meanwhile), then settle.
    A refusal marks the intent failed and is raised; a provider that cannot be reached leaves
    the intent for ``resume`` and raises 503."""
    async with sessions() as session:
        intent = await _refund(session, refund_id)
        if intent is None:
            raise LookupError(f"no refund {refund_id}")
        payment = (await session.execute(select(payments).where(
            payments.c.id == intent["payment_id"]))).mappings().one()
    if intent["status"] != "requested":
        return view(intent, payment)
    provider = providers[payment["provider"]]
    try:
        issued = await provider.refund(str(refund_id), str(payment["provider_payment_id"]),
                                       intent["amount"], intent["currency"])
    except ProblemError as refused:
        await _fail(sessions, refund_id, refused.detail)
        raise
    except Exception as exc:
        raise ServiceUnavailable(
            f"the refund is recorded and the provider did not answer ({type(exc).__name__}); "
            "it is retried until the provider answers", slug="provider-unavailable") from exc
    async with UnitOfWork(sessions, "payment") as uow:
        return await settle(uow, refund_id, issued)


async def settle(uow: UnitOfWork, refund_id: uuid.UUID, issued: ProviderRefund) -> dict[str, Any]:
    session = uow.session
    first = await _refund(session, refund_id)
    assert first is not None
    row = await load(session, str(first["payment_id"]), lock=True)
    intent = await _refund(session, refund_id, lock=True)
    assert intent is not None
    if intent["status"] != "requested":
        return view(intent, row)
    refunded_total = row["refunded_amount"] + intent["amount"]
    new = transition(Status(row["status"]),
                     status_after_refund(row["captured_amount"], refunded_total))
    status = "succeeded" if issued.succeeded else "pending"
    await session.execute(update(payments).where(payments.c.id == row["id"]).values(
        refunded_amount=refunded_total, status=new.value, updated_at=func.now()))
    await session.execute(update(refunds_table).where(refunds_table.c.id == refund_id).values(
        status=status, provider_refund_id=issued.provider_refund_id, updated_at=func.now()))
    uow.publish("payment.refunded", event_data(
        row, refund_id=str(refund_id), refunded_amount=intent["amount"],
        fully_refunded=new is Status.REFUNDED), aggregate_id=str(row["id"]))
    return view({**intent, "status": status}, {**row, "status": new.value})


async def _fail(sessions: async_sessionmaker[AsyncSession], refund_id: uuid.UUID,
                reason: str) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(refunds_table).where(
            refunds_table.c.id == refund_id, refunds_table.c.status == "requested").values(
            status="failed", failure_reason=reason, updated_at=func.now()))


async def pending_intents(session: AsyncSession, limit: int = 100) -> list[uuid.UUID]:
    table = refunds_table
    rows = await session.execute(select(table.c.id).where(table.c.status == "requested")
                                 .order_by(table.c.created_at).limit(limit))
    return [r[0] for r in rows]


async def resume(sessions: async_sessionmaker[AsyncSession],
                 providers: dict[str, Provider]) -> tuple[int, int]:
    """Carry every ``requested`` intent on; returns (settled, still waiting or refused)."""
    async with sessions() as session:
        waiting = await pending_intents(session)
    settled = failed = 0
    for refund_id in waiting:
        try:
            await execute(sessions, providers, refund_id)
            settled += 1
        except ProblemError:
            failed += 1
    return settled, failed


def view(intent: Any, payment: Any) -> dict[str, Any]:
    return {"id": str(intent["id"]), "payment_id": str(intent["payment_id"]),
            "amount": {"amount": intent["amount"], "currency": intent["currency"]},
            "status": intent["status"], "reason": intent["reason"],
            "payment_status": payment["status"]}
