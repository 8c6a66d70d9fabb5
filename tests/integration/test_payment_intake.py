"""Pending payments for a batch of registration.created, on the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from cluster.settings import Settings
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork, outbox_for
from serve.payments import intake, service
from serve.payments.domain import Kind, Order
from serve.payments.providers import SandboxProvider
from storage.engine import create_engine, sessionmaker
from storage.payment import orders, payments

START = datetime.now(UTC) + timedelta(days=10)


@pytest.fixture
async def sessions(migrated_settings: Settings) -> AsyncIterator[Any]:
    engine = create_engine(migrated_settings, "payment")
    yield sessionmaker(engine)
    await engine.dispose()


def created(event_id: str, amount: int, status: str = "pending_payment",
            mode: str = "full", prepayment: int | None = None) -> Envelope:
    return Envelope(type="registration.created", producer="event", correlation_id="c", data={
        "registration_id": str(uuid.uuid4()), "event_id": event_id,
        "organization_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()),
        "ticket_type_id": "tt", "quantity": 1, "status": status, "amount": amount,
        "currency": "RUB", "payment_mode": mode, "prepayment_amount": prepayment,
        "reservation_id": None, "expires_at": None, "waitlist_offer": False})


async def starts_at(event_id: str) -> datetime | None:
    return START


async def apply(sessions: Any, sandbox: SandboxProvider, batch: list[Envelope]) -> int:
    async with UnitOfWork(sessions, "payment") as uow:
        return await intake.create_pending_payments(uow, sandbox, batch, starts_at,
                                                    "http://127.0.0.1:8080")


async def test_a_batch_gets_its_orders_and_pending_payments_in_one_go(sessions: Any) -> None:
    sandbox = SandboxProvider("secret", "http://127.0.0.1:8080", tolerance_s=300)
    event_id = str(uuid.uuid4())
    full = [created(event_id, 1500) for _ in range(5)]
    prepaid = created(event_id, 3000, mode="prepayment", prepayment=1000)
    free = created(event_id, 0, status="confirmed")
    batch = [*full, prepaid, free]
    assert await apply(sessions, sandbox, batch) == 6
    async with sessions() as s:
        rows = (await s.execute(select(payments).where(
            payments.c.event_id == uuid.UUID(event_id)))).mappings().all()
        kept = (await s.execute(select(orders).where(
            orders.c.event_id == uuid.UUID(event_id)))).mappings().all()
        outbox = outbox_for("payment")
        announced = await s.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.aggregate_id.in_([str(r["id"]) for r in rows])))
    assert sorted((r["kind"], r["amount"], r["status"]) for r in rows) == sorted(
        [("full", 1500, "pending")] * 5 + [("prepayment", 1000, "pending")])
    assert all(r["confirmation_url"].endswith("/sandbox-checkout") for r in rows)
    assert len(kept) == 6  # the free registration keeps no order
    assert [o["starts_at"] for o in kept if o["prepayment"]] == [START]
    assert announced == 6
    # Redelivered: nothing new, nothing announced twice.
    assert await apply(sessions, sandbox, batch) == 0


async def test_a_payment_the_payer_created_first_is_kept(sessions: Any) -> None:
    sandbox = SandboxProvider("secret", "http://127.0.0.1:8080", tolerance_s=300)
    event_id = str(uuid.uuid4())
    early = created(event_id, 700)
    data = early.data
    reg = service.Registration(data["registration_id"], event_id, data["organization_id"],
                               data["user_id"], Order(total=700, currency="RUB",
                                                      prepayment=None))
    async with UnitOfWork(sessions, "payment") as uow:
        await uow.session.execute(orders.insert().values(
            registration_id=uuid.UUID(reg.registration_id), event_id=uuid.UUID(event_id),
            organization_id=uuid.UUID(reg.organization_id), user_id=uuid.UUID(reg.user_id),
            total=700, currency="RUB"))
        first = await service.create_payment(uow, sandbox, reg, Kind.FULL)
    assert await apply(sessions, sandbox, [early, created(event_id, 700)]) == 1
    async with sessions() as s:
        ids = (await s.scalars(select(payments.c.id).where(
            payments.c.registration_id == uuid.UUID(reg.registration_id)))).all()
    assert [str(i) for i in ids] == [first["id"]]
