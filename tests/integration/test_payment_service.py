"""Payment use cases on the real PostgreSQL: creation, webhooks, refunds, cancellation."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cluster.settings import Settings
from messaging.outbox import UnitOfWork, outbox_for
from serve.common.errors import Conflict, NotFound, Unauthorized
from serve.payments import refunds, service
from serve.payments.domain import Kind, Order
from serve.payments.providers import SandboxProvider
from storage.engine import create_engine, sessionmaker
from storage.payment import payments, sandbox_webhooks

SECRET = "webhook-secret"


@pytest.fixture
async def sessions(migrated_settings: Settings) -> AsyncIterator[Any]:
    engine = create_engine(migrated_settings, "payment", pool_size=10)
    yield sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider(SECRET, "http://127.0.0.1:8080", tolerance_s=300)


def registration(total: int = 1_000, prepayment: int | None = None) -> service.Registration:
    return service.Registration(
        registration_id=str(uuid.uuid4()), event_id=str(uuid.uuid4()),
        organization_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()),
        order=Order(total=total, currency="RUB", prepayment=prepayment))


async def create(sessions: Any, sandbox: SandboxProvider, reg: service.Registration,
                 kind: Kind = Kind.FULL) -> dict[str, Any]:
    async with UnitOfWork(sessions, "payment") as uow:
        return await service.create_payment(uow, sandbox, reg, kind)


async def outbox_count(sessions: Any, event_type: str, payment_id: str) -> int:
    outbox = outbox_for("payment")
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.type == event_type, outbox.c.aggregate_id == payment_id)))


async def checkout(sessions: Any, sandbox: SandboxProvider, payment: dict[str, Any],
                   outcome: str, copies: int = 1, reverse: bool = False,
                   save_method: bool = False) -> list[str]:
    """Play the payer, then hand back the webhook bodies the sandbox queued for delivery."""
    async with sessions() as session, session.begin():
        provider_id = await session.scalar(select(payments.c.provider_payment_id).where(
            payments.c.id == uuid.UUID(payment["id"])))
        last = await session.scalar(select(func.coalesce(func.max(sandbox_webhooks.c.id), 0)))
        await sandbox.checkout(session, str(provider_id), outcome, copies, reverse,
                               save_method=save_method)
        rows = await session.execute(select(sandbox_webhooks.c.body).where(
            sandbox_webhooks.c.id > last).order_by(sandbox_webhooks.c.id))
        return [r[0] for r in rows]


async def deliver(sessions: Any, sandbox: SandboxProvider, body: str) -> str:
    headers = sandbox.signed_headers(body, int(time.time()))
    note = await sandbox.verify_webhook(headers, body.encode(), time.time())
    async with UnitOfWork(sessions, "payment") as uow:
        return await service.apply_notification(uow, sandbox, note, json.loads(body))


async def status_of(sessions: Any, payment_id: str) -> dict[str, Any]:
    async with sessions() as session:
        return service.view(await service.load(session, payment_id))


async def test_creating_a_payment_twice_returns_the_same_one(sessions: Any,
                                                             sandbox: SandboxProvider) -> None:
    reg = registration()
    first = await create(sessions, sandbox, reg)
    again = await create(sessions, sandbox, reg)
    assert again["id"] == first["id"]
    assert first["status"] == "pending"
    assert first["amount"] == {"amount": 1_000, "currency": "RUB"}
    assert first["confirmation_url"].endswith(f"/payments/{first['id']}/sandbox-checkout")
    assert await outbox_count(sessions, "payment.created", first["id"]) == 1


async def test_concurrent_creation_makes_one_payment(sessions: Any,
                                                     sandbox: SandboxProvider) -> None:
    reg = registration()
    results = await asyncio.gather(*(create(sessions, sandbox, reg) for _ in range(6)))
    assert len({r["id"] for r in results}) == 1
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(payments).where(
            payments.c.registration_id == uuid.UUID(reg.registration_id)))
    assert count == 1


async def test_the_same_webhook_five_times_concurrently_has_one_effect(
        sessions: Any, sandbox: SandboxProvider) -> None:
    payment = await create(sessions, sandbox, registration())
    bodies = await checkout(sessions, sandbox, payment, "succeeded")
    final = bodies[-1]
    outcomes = await asyncio.gather(*(deliver(sessions, sandbox, final) for _ in range(5)))
    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 4
    after = await status_of(sessions, payment["id"])
    assert after["status"] == "completed"
    assert after["captured"]["amount"] == 1_000
    assert await outbox_count(sessions, "payment.completed", payment["id"]) == 1


async def test_out_of_order_and_duplicated_reports_only_move_forward(
        sessions: Any, sandbox: SandboxProvider) -> None:
    payment = await create(sessions, sandbox, registration())
    bodies = await checkout(sessions, sandbox, payment, "succeeded", copies=2, reverse=True)
    results = [await deliver(sessions, sandbox, body) for body in bodies]
    assert results == ["applied", "duplicate", "stale", "duplicate"]
    assert (await status_of(sessions, payment["id"]))["status"] == "completed"


async def test_a_failed_payment_can_be_replaced_by_a_new_attempt(
        sessions: Any, sandbox: SandboxProvider) -> None:
    reg = registration()
    payment = await create(sessions, sandbox, reg)
    for body in await checkout(sessions, sandbox, payment, "failed"):
        await deliver(sessions, sandbox, body)
    assert (await status_of(sessions, payment["id"]))["status"] == "failed"
    assert await outbox_count(sessions, "payment.failed", payment["id"]) == 1
    retry = await create(sessions, sandbox, reg)
    assert retry["id"] != payment["id"] and retry["status"] == "pending"


async def test_forged_and_stale_webhooks_change_nothing(sessions: Any,
                                                        sandbox: SandboxProvider) -> None:
    payment = await create(sessions, sandbox, registration())
    body = (await checkout(sessions, sandbox, payment, "succeeded"))[-1]
    forger = SandboxProvider("not-the-secret", "http://x", 300)
    forged = forger.signed_headers(body, int(time.time()))
    stale = sandbox.signed_headers(body, int(time.time()) - 3_600)
    for headers in (forged, stale, {}):
        with pytest.raises(Unauthorized):
            await sandbox.verify_webhook(headers, body.encode(), time.time())
    assert (await status_of(sessions, payment["id"]))["status"] == "pending"


async def test_prepayment_then_remainder(sessions: Any, sandbox: SandboxProvider) -> None:
    reg = registration(total=10_000, prepayment=3_000)
    with pytest.raises(Conflict, match="after the prepayment"):
        await create(sessions, sandbox, reg, Kind.REMAINDER)
    deposit = await create(sessions, sandbox, reg, Kind.PREPAYMENT)
    assert deposit["amount"]["amount"] == 3_000
    for body in await checkout(sessions, sandbox, deposit, "succeeded"):
        await deliver(sessions, sandbox, body)
    rest = await create(sessions, sandbox, reg, Kind.REMAINDER)
    assert rest["amount"]["amount"] == 7_000
    with pytest.raises(Conflict):
        await create(sessions, sandbox, reg, Kind.FULL)


async def paid(sessions: Any, sandbox: SandboxProvider, reg: service.Registration) -> str:
    payment = await create(sessions, sandbox, reg)
    for body in await checkout(sessions, sandbox, payment, "succeeded"):
        await deliver(sessions, sandbox, body)
    return str(payment["id"])


async def refund(sessions: Any, sandbox: SandboxProvider, payment_id: str,
                 amount: int | None, cause: str | None = None) -> dict[str, Any]:
    return await service.refund(sessions, {"sandbox": sandbox}, payment_id, amount, "test",
                                cause or f"test:{uuid.uuid4()}")


async def test_concurrent_partial_refunds_never_exceed_the_capture(
        sessions: Any, sandbox: SandboxProvider) -> None:
    payment_id = await paid(sessions, sandbox, registration(total=1_000))
    results = await asyncio.gather(*(refund(sessions, sandbox, payment_id, 300)
                                     for _ in range(5)), return_exceptions=True)
    done = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(done) == 3 and len(refused) == 2
    after = await status_of(sessions, payment_id)
    assert after["refunded"]["amount"] == 900
    assert after["status"] == "partially_refunded"
    last = await refund(sessions, sandbox, payment_id, None)
    assert last["amount"]["amount"] == 100 and last["payment_status"] == "refunded"
    with pytest.raises(Conflict):
        await refund(sessions, sandbox, payment_id, None)
    assert await outbox_count(sessions, "payment.refunded", payment_id) == 4


async def test_refunding_an_unpaid_payment_is_a_conflict(sessions: Any,
                                                         sandbox: SandboxProvider) -> None:
    payment = await create(sessions, sandbox, registration())
    with pytest.raises(Conflict) as caught:
        await refund(sessions, sandbox, payment["id"], None)
    assert caught.value.slug == "illegal-transition"
    with pytest.raises(NotFound):
        await refund(sessions, sandbox, str(uuid.uuid4()), None)


async def test_event_cancellation_refunds_everyone_exactly_once(
        sessions: Any, sandbox: SandboxProvider) -> None:
    event_id = str(uuid.uuid4())
    regs = [service.Registration(str(uuid.uuid4()), event_id, str(uuid.uuid4()),
                                 str(uuid.uuid4()), Order(total=500, currency="RUB"))
            for _ in range(3)]
    captured = [await paid(sessions, sandbox, reg) for reg in regs[:2]]
    unpaid = await create(sessions, sandbox, regs[2])
    await refund(sessions, sandbox, captured[0], 200)  # partly refunded already

    async def cancel() -> int:
        async with UnitOfWork(sessions, "payment") as uow:
            return await service.refund_event(uow, event_id)

    assert await cancel() == 2
    assert await cancel() == 0
    assert await refunds.resume(sessions, {"sandbox": sandbox}) == (2, 0)
    assert await refunds.resume(sessions, {"sandbox": sandbox}) == (0, 0)
    states = [await status_of(sessions, pid) for pid in [*captured, unpaid["id"]]]
    assert [s["status"] for s in states] == ["refunded", "refunded", "failed"]
    assert [s["refunded"]["amount"] for s in states] == [500, 500, 0]


async def test_the_database_refuses_refunds_past_the_capture(sessions: Any,
                                                              sandbox: SandboxProvider) -> None:
    payment_id = await paid(sessions, sandbox, registration(total=1_000))
    with pytest.raises(Exception, match="refund_within_capture"):
        async with sessions() as session, session.begin():
            await session.execute(update(payments).where(payments.c.id == uuid.UUID(payment_id))
                                  .values(refunded_amount=1_001))


async def test_a_cancelled_registration_is_refunded_once(sessions: Any,
                                                         sandbox: SandboxProvider) -> None:
    reg = registration(total=800)
    payment_id = await paid(sessions, sandbox, reg)
    other = registration(total=800)
    unpaid = await create(sessions, sandbox, other)

    async def cancelled(r: service.Registration) -> int:
        async with UnitOfWork(sessions, "payment") as uow:
            return await service.refund_registration(uow, r.registration_id,
                                                     "sold-out-after-expiry")

    assert await cancelled(reg) == 1
    assert await cancelled(reg) == 0
    assert await cancelled(other) == 0
    assert await refunds.resume(sessions, {"sandbox": sandbox}) == (1, 0)
    done = await status_of(sessions, payment_id)
    assert done["status"] == "refunded" and done["refunded"]["amount"] == 800
    assert (await status_of(sessions, unpaid["id"]))["status"] == "failed"
    assert await outbox_count(sessions, "payment.refunded", payment_id) == 1


async def test_remainder_reminder_and_deadline_policy(sessions: Any,
                                                      sandbox: SandboxProvider) -> None:
    from datetime import UTC, datetime, timedelta

    from serve.payments import orders, remainder

    starts = datetime.now(UTC) + timedelta(days=365)
    due_at = starts - timedelta(hours=48)
    reg = registration(total=10_000, prepayment=3_000)
    settled = registration(total=10_000, prepayment=3_000)
    for r in (reg, settled):
        async with sessions() as session, session.begin():
            await orders.record(session, {
                "registration_id": r.registration_id, "event_id": r.event_id,
                "organization_id": r.organization_id, "user_id": r.user_id, "amount": 10_000,
                "currency": "RUB", "prepayment_amount": 3_000}, starts)
        deposit = await create(sessions, sandbox, r, Kind.PREPAYMENT)
        for body in await checkout(sessions, sandbox, deposit, "succeeded"):
            await deliver(sessions, sandbox, body)
    rest_paid = await create(sessions, sandbox, settled, Kind.REMAINDER)
    for body in await checkout(sessions, sandbox, rest_paid, "succeeded"):
        await deliver(sessions, sandbox, body)

    async def sweep(at: datetime) -> int:
        async with UnitOfWork(sessions, "payment") as uow:
            return await remainder.sweep(uow, at, due_hours=48, remind_hours=24)

    assert await sweep(due_at - timedelta(hours=30)) == 0
    assert await sweep(due_at - timedelta(hours=10)) == 1  # the reminder, for `reg` only
    assert await sweep(due_at - timedelta(hours=5)) == 0
    pending = await create(sessions, sandbox, reg, Kind.REMAINDER)
    assert await sweep(due_at + timedelta(minutes=1)) == 1  # overdue
    assert await sweep(due_at + timedelta(hours=1)) == 0
    assert (await status_of(sessions, pending["id"]))["status"] == "failed"
    with pytest.raises(Conflict) as caught:
        await create(sessions, sandbox, reg, Kind.REMAINDER)
    assert caught.value.slug == "remainder-overdue"
    outbox = outbox_for("payment")
    async with sessions() as session:
        notices = (await session.execute(select(outbox.c.type).where(
            outbox.c.aggregate_id == reg.registration_id).order_by(outbox.c.id))).scalars().all()
    assert notices == ["payment.remainder.due", "payment.remainder.overdue"]


async def test_a_moved_event_moves_its_remainder_deadlines(sessions: Any,
                                                           sandbox: SandboxProvider) -> None:
    from datetime import UTC, datetime, timedelta

    from serve.payments import orders, remainder
    from storage.payment import orders as orders_table

    starts = datetime.now(UTC) + timedelta(days=700)
    moved = starts + timedelta(days=10)
    reg = registration(total=10_000, prepayment=3_000)
    async with sessions() as session, session.begin():
        await orders.record(session, {
            "registration_id": reg.registration_id, "event_id": reg.event_id,
            "organization_id": reg.organization_id, "user_id": reg.user_id, "amount": 10_000,
            "currency": "RUB", "prepayment_amount": 3_000}, starts)
    deposit = await create(sessions, sandbox, reg, Kind.PREPAYMENT)
    for body in await checkout(sessions, sandbox, deposit, "succeeded"):
        await deliver(sessions, sandbox, body)
    async with UnitOfWork(sessions, "payment") as uow:  # event.updated, as the handler does
        assert await orders.reschedule(uow.session, reg.event_id, moved) == 1

    async def sweep(at: datetime) -> int:
        async with UnitOfWork(sessions, "payment") as uow:
            return await remainder.sweep(uow, at, due_hours=48, remind_hours=24)

    old_deadline = starts - timedelta(hours=48)
    assert await sweep(old_deadline + timedelta(minutes=1)) == 0  # neither due nor overdue
    async with sessions() as session:
        row = (await session.execute(select(orders_table).where(
            orders_table.c.registration_id == uuid.UUID(reg.registration_id)))).mappings().one()
    assert row["starts_at"] == moved and row["remainder_overdue_at"] is None
    assert await sweep(moved - timedelta(hours=58)) == 1  # the reminder, before the new one
    assert await sweep(moved - timedelta(hours=47)) == 1  # overdue after the new deadline
