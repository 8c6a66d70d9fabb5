"""A provider is called only when the payer opens the payment: YooKassa's local fake over HTTP,
the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork, outbox_for
from serve.common.errors import Conflict
from serve.payments import checkout, intake, service
from serve.payments.domain import Kind, Order
from serve.payments.yookassa import YooKassaProvider
from storage.payment import payments
from tests.fakes.server import running
from tests.fakes.yookassa_api import create_app

API = "https://afisha.test"


@pytest.fixture
async def yookassa() -> AsyncIterator[tuple[YooKassaProvider, Any, str]]:
    app = create_app("shop-1", "live_secret")
    with running(app) as base_url:
        provider = YooKassaProvider("shop-1", "live_secret", f"{base_url}/v3", API)
        yield provider, app, base_url
        await provider.aclose()


def created(event_id: str, amount: int) -> Envelope:
    return Envelope(type="registration.created", producer="event", correlation_id="c", data={
        "registration_id": str(uuid.uuid4()), "event_id": event_id,
        "organization_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()),
        "ticket_type_id": "tt", "quantity": 1, "status": "pending_payment", "amount": amount,
        "currency": "RUB", "payment_mode": "full", "prepayment_amount": None,
        "reservation_id": None, "expires_at": None, "waitlist_offer": False})


async def starts_at(event_id: str) -> datetime | None:
    return datetime.now(UTC) + timedelta(days=10)


async def intake_batch(sessions: Any, provider: YooKassaProvider,
                       batch: list[Envelope]) -> list[Any]:
    async with UnitOfWork(sessions, "payment") as uow:
        await intake.create_pending_payments(uow, provider, batch, starts_at, API)
    async with sessions() as s:
        return list((await s.execute(select(payments).where(payments.c.registration_id.in_(
            [uuid.UUID(e.data["registration_id"]) for e in batch])))).mappings().all())


async def test_a_sale_calls_the_provider_only_for_the_payments_opened(
        payment_sessions: Any, yookassa: Any) -> None:
    sessions = payment_sessions
    provider, fake, _ = yookassa
    batch = [created(str(uuid.uuid4()), 1_500) for _ in range(3)]
    rows = await intake_batch(sessions, provider, batch)
    assert fake.state.requests == []  # three pending payments, no call to YooKassa
    assert [(r["provider"], r["provider_payment_id"], r["status"]) for r in rows] == [
        ("yookassa", None, "pending")] * 3
    assert {r["confirmation_url"] for r in rows} == {
        f"{API}/api/v1/payments/{r['id']}/pay" for r in rows}
    async with sessions() as s:
        outbox = outbox_for("payment")
        announced = (await s.execute(select(outbox.c.envelope).where(
            outbox.c.type == "payment.created",
            outbox.c.aggregate_id.in_([str(r["id"]) for r in rows])))).scalars().all()
    assert sorted(e["data"]["confirmation_url"] for e in announced) == sorted(
        r["confirmation_url"] for r in rows)  # the Pay buttons lead to our link

    # The payer opens the first one twice at once (a double click): the second waits for the
    # first under the row lock and finds it issued, so YooKassa is asked once.
    opened = rows[0]
    pages = await asyncio.gather(*(checkout.open_payment(sessions, provider, str(opened["id"]))
                                   for _ in range(2)))
    assert len(fake.state.payments) == 1
    made = next(iter(fake.state.payments.values()))
    assert pages == [made["confirmation"]["confirmation_url"]] * 2
    assert made["amount"] == {"value": "15.00", "currency": "RUB"}
    assert made["metadata"] == {"payment_id": str(opened["id"])}
    async with sessions() as s:
        row = await service.load(s, str(opened["id"]))
    assert row["provider_payment_id"] == made["id"]
    assert row["confirmation_url"] == made["confirmation"]["confirmation_url"]
    # Opened again later: the same page, no new call to create.
    assert await checkout.open_payment(sessions, provider, str(opened["id"])) == pages[0]
    assert fake.state.requests == [("POST", "/v3/payments", str(opened["id"]))]

    # The payer pays; the notification completes it, and the link then says so.
    async with UnitOfWork(sessions, "payment") as uow:
        fake.state.payments[made["id"]]["status"] = "succeeded"
        note = await provider.verify_webhook({}, json.dumps({
            "type": "notification", "event": "payment.succeeded",
            "object": {"id": made["id"], "status": "succeeded"}}).encode(), 0)
        assert await service.apply_notification(uow, provider, note, {}) == "applied"
    with pytest.raises(Conflict, match="already paid"):
        await checkout.open_payment(sessions, provider, str(opened["id"]))
    assert len(fake.state.payments) == 1  # the two unopened payments never reached YooKassa


async def test_a_payment_that_can_no_longer_be_paid_is_not_issued(payment_sessions: Any,
                                                                  yookassa: Any) -> None:
    sessions = payment_sessions
    provider, fake, _ = yookassa
    envelope = created(str(uuid.uuid4()), 900)
    [row] = await intake_batch(sessions, provider, [envelope])
    async with UnitOfWork(sessions, "payment") as uow:
        await service.refund_registration(uow, envelope.data["registration_id"],
                                          "registration cancelled: hold expired")
    with pytest.raises(Conflict, match="no longer be paid: registration cancelled"):
        await checkout.open_payment(sessions, provider, str(row["id"]))
    assert fake.state.requests == []


async def test_keeping_the_method_is_asked_of_the_provider_when_the_payer_opens_it(
        payment_sessions: Any, yookassa: Any) -> None:
    sessions = payment_sessions
    provider, fake, _ = yookassa
    envelope = created(str(uuid.uuid4()), 2_000)
    [row] = await intake_batch(sessions, provider, [envelope])
    data = envelope.data
    reg = service.Registration(data["registration_id"], data["event_id"],
                               data["organization_id"], data["user_id"],
                               Order(total=2_000, currency="RUB", prepayment=None))
    async with UnitOfWork(sessions, "payment") as uow:
        kept = await service.create_payment(uow, provider, reg, Kind.FULL, save_method=True)
    assert kept["id"] == str(row["id"]) and fake.state.requests == []
    await checkout.open_payment(sessions, provider, str(row["id"]))
    [made] = fake.state.payments.values()
    assert made["payment_method"]["saved"] is False  # asked to keep it once paid
