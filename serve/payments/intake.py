"""Pending payments for a delivered batch of ``registration.created``: one transaction.

During a sale thousands of registrations arrive per second; each paid one needs its order and
its pending payment. The batch is written with one multi-row insert per table (conflicts
skipped, so a redelivery or a payment the payer created first changes nothing) and one outbox
write for the ``payment.created`` events. No provider is called here: the sandbox issues
payments locally, and a payment at a provider that must be called to issue one (YooKassa) is
issued when its payer opens it (``checkout.open_payment``); until then its confirmation URL is
our own ``/api/v1/payments/{id}/pay``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.payments import orders, service
from serve.payments.domain import Kind, Order, Status, amount_due
from serve.payments.providers import Provider, SandboxProvider
from storage.payment import payments

StartsAt = Callable[[str], Awaitable[datetime | None]]


def pay_url(api_base_url: str, payment_id: str) -> str:
    """Where the payer opens a payment not issued at its provider yet
    (``checkout.open_payment``)."""
    return f"{api_base_url.rstrip('/')}/api/v1/payments/{payment_id}/pay"


async def create_pending_payments(uow: UnitOfWork, provider: Provider,
                                  envelopes: list[Envelope], starts_at: StartsAt,
                                  api_base_url: str) -> int:
    """Orders for the paid registrations of ``envelopes`` and a pending payment for each one
    still waiting for it; returns how many payments were created."""
    paid = [e.data for e in envelopes if e.data["amount"] > 0]
    if not paid:
        return 0
    starts: dict[str, datetime | None] = {}
    for data in paid:
        if data.get("payment_mode") == "prepayment" and data["event_id"] not in starts:
            starts[data["event_id"]] = await starts_at(data["event_id"])
    await orders.record_many(uow.session, [(d, starts.get(d["event_id"])) for d in paid])
    rows = [_payment_row(provider, api_base_url, d) for d in paid
            if d["status"] == "pending_payment"]
    if not rows:
        return 0
    inserted = (await uow.session.execute(
        pg_insert(payments).on_conflict_do_nothing(
            index_elements=["registration_id", "kind"],
            index_where=text("status <> 'failed'"))
        .returning(*payments.c), rows)).mappings().all()
    for row in inserted:
        uow.publish("payment.created", service.event_data(
            row, confirmation_url=row["confirmation_url"]), aggregate_id=str(row["id"]))
    return len(inserted)


def _kind(data: dict[str, Any]) -> Kind:
    return Kind.PREPAYMENT if data.get("payment_mode") == "prepayment" else Kind.FULL


def _payment_row(provider: Provider, api_base_url: str, data: dict[str, Any]
                 ) -> dict[str, Any]:
    kind = _kind(data)
    order = Order(total=data["amount"], currency=data["currency"],
                  prepayment=data.get("prepayment_amount"))
    amount = amount_due(order, kind, {})
    payment_id = uuid.uuid4()
    provider_id: str | None
    url: str | None
    if isinstance(provider, SandboxProvider):
        issued = provider.issue(str(payment_id))
        provider_id, url = issued.provider_payment_id, issued.confirmation_url
    else:  # issued at the provider when its payer opens it (checkout.open_payment)
        provider_id, url = None, pay_url(api_base_url, str(payment_id))
    return {"id": payment_id, "registration_id": uuid.UUID(data["registration_id"]),
            "event_id": uuid.UUID(data["event_id"]),
            "organization_id": uuid.UUID(data["organization_id"]),
            "user_id": uuid.UUID(data["user_id"]), "kind": kind.value,
            "status": Status.PENDING.value, "amount": amount, "currency": data["currency"],
            "provider": provider.name, "provider_payment_id": provider_id, "confirmation_url": url}
