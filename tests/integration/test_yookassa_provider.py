"""The YooKassa provider against a local fake of its API, over HTTP on a local port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from serve.common.errors import BadRequest
from serve.payments.domain import Status
from serve.payments.yookassa import YooKassaProvider, to_value
from tests.fakes.server import running
from tests.fakes.yookassa_api import create_app


@pytest.fixture
async def fake() -> AsyncIterator[tuple[YooKassaProvider, Any, httpx.AsyncClient]]:
    app = create_app("shop-1", "live_secret")
    with running(app) as base_url:
        provider = YooKassaProvider("shop-1", "live_secret", f"{base_url}/v3",
                                    "https://afisha.test/return")
        control = httpx.AsyncClient(base_url=base_url)
        app.state.base_url = base_url
        yield provider, app, control
        await provider.aclose()
        await control.aclose()


def notification(event: str, provider_id: str, status: str) -> bytes:
    return json.dumps({"type": "notification", "event": event,
                       "object": {"id": provider_id, "status": status}}).encode()


def test_amounts_are_sent_as_decimal_strings() -> None:
    assert to_value(1050) == "10.50"
    assert to_value(5) == "0.05"


async def test_create_is_idempotent_by_our_payment_id(fake: Any) -> None:
    provider, app, _ = fake
    first = await provider.create_payment(None, "pay-1", 150_000, "RUB", "ticket")
    again = await provider.create_payment(None, "pay-1", 150_000, "RUB", "ticket")
    assert first == again
    assert len(app.state.payments) == 1
    created = app.state.payments[first.provider_payment_id]
    assert created["amount"] == {"value": "1500.00", "currency": "RUB"}
    assert created["metadata"] == {"payment_id": "pay-1"}
    assert first.confirmation_url.startswith("https://yoomoney.example/checkout")


async def test_notifications_are_checked_against_the_api(fake: Any) -> None:
    provider, _, control = fake
    created = await provider.create_payment(None, "pay-2", 1_000, "RUB", "t")
    pid = created.provider_payment_id
    forged = await provider.verify_webhook({}, notification("payment.succeeded", pid,
                                                           "succeeded"), 0)
    assert forged.status is Status.PENDING  # the API says it is still pending
    await control.post(f"/_control/payments/{pid}", json={"status": "waiting_for_capture"})
    captured = await provider.verify_webhook({}, notification(
        "payment.waiting_for_capture", pid, "waiting_for_capture"), 0)
    assert captured.status is Status.COMPLETED  # captured on the way
    assert captured.event_id == f"{pid}:succeeded"


async def test_cancelled_payments_carry_the_reason(fake: Any) -> None:
    provider, _, control = fake
    pid = (await provider.create_payment(None, "pay-3", 1_000, "RUB", "t")).provider_payment_id
    await control.post(f"/_control/payments/{pid}", json={"status": "canceled"})
    note = await provider.verify_webhook({}, notification("payment.canceled", pid, "canceled"), 0)
    assert note.status is Status.FAILED and note.reason == "insufficient_funds"


async def test_refunds_and_bad_notifications(fake: Any) -> None:
    provider, app, _ = fake
    pid = (await provider.create_payment(None, "pay-4", 1_000, "RUB", "t")).provider_payment_id
    made = await provider.refund("refund-1", pid, 400, "RUB")
    again = await provider.refund("refund-1", pid, 400, "RUB")
    assert made == again and made.succeeded
    assert len(app.state.refunds) == 1
    for body in (b"not json", notification("refund.succeeded", pid, "succeeded")):
        with pytest.raises(BadRequest):
            await provider.verify_webhook({}, body, 0)
    wrong_key = YooKassaProvider("shop-1", "wrong", f"{app.state.base_url}/v3", "https://x")
    with pytest.raises(BadRequest, match="invalid_credentials"):
        await wrong_key.create_payment(None, "pay-5", 1_000, "RUB", "t")
    await wrong_key.aclose()


async def test_a_saved_method_is_reported_once_paid_and_charges_without_a_redirect(
        fake: Any) -> None:
    provider, app, control = fake
    first = await provider.create_payment(None, "pay-5", 2_000, "RUB", "t", save_method=True)
    assert app.state.payments[first.provider_payment_id]["payment_method"]["saved"] is False
    pid = first.provider_payment_id
    pending = await provider.verify_webhook({}, notification("payment.pending", pid, "x"), 0)
    assert pending.method is None  # nothing kept before the payer paid
    await control.post(f"/_control/payments/{pid}", json={"status": "succeeded"})
    paid = await provider.verify_webhook({}, notification("payment.succeeded", pid, "x"), 0)
    assert paid.method is not None and paid.method.title == "Bank card *4444"
    again = await provider.create_payment(None, "pay-6", 1_500, "RUB", "t",
                                          method_id=paid.method.provider_method_id)
    assert again.succeeded and again.confirmation_url is None
    with pytest.raises(BadRequest):
        await provider.create_payment(None, "pay-7", 1_500, "RUB", "t", method_id="pm-unknown")
