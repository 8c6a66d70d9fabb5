"""Payment service providers behind one interface.

``SandboxProvider`` (the default) behaves like a real provider: a payment gets a confirmation
URL, the payer's decision (``sandbox-checkout``) is announced by signed webhooks delivered
asynchronously with retries, and refunds go through it. Its outgoing webhooks are rows of
``sandbox_webhooks`` written in the caller's transaction, so none is lost across restarts.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from serve.common.errors import BadRequest, NotFound
from serve.payments import signing
from serve.payments.domain import Status
from storage.payment import sandbox_webhooks


@dataclass(frozen=True, slots=True)
class ProviderPayment:
    provider_payment_id: str
    confirmation_url: str | None  # None: charged to a saved method, no payer step
    succeeded: bool = False  # the provider took the money already (a saved method)


@dataclass(frozen=True, slots=True)
class SavedMethod:
    """A payment method the provider keeps for the payer: its id there and how to show it."""

    provider_method_id: str
    type: str
    title: str


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    provider_refund_id: str
    succeeded: bool


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified statement from the provider about one of its payments."""

    event_id: str
    provider_payment_id: str
    status: Status
    reason: str | None = None
    method: SavedMethod | None = None  # the method the payer chose to keep, once paid


class Provider(Protocol):
    name: str

    async def create_payment(self, session: AsyncSession, payment_id: str, amount: int,
                             currency: str, description: str, save_method: bool = False,
                             method_id: str | None = None) -> ProviderPayment:
        """Issue a payment; ``save_method`` asks the provider to keep the payer's method,
        ``method_id`` charges a kept one without a payer step."""
        ...

    async def refund(self, refund_id: str, provider_payment_id: str, amount: int,
                     currency: str) -> ProviderRefund: ...

    async def verify_webhook(self, headers: dict[str, str], body: bytes,
                             now: float) -> Notification: ...


_OUTCOMES = {"succeeded": Status.COMPLETED, "failed": Status.FAILED,
             "processing": Status.PROCESSING}


class SandboxProvider:
    name = "sandbox"
    issues_locally = True  # a payment is issued without calling anyone (``issue``)

    def __init__(self, secret: str, public_url: str, tolerance_s: int) -> None:
        self.secret = secret
        self.public_url = public_url.rstrip("/")
        self.tolerance_s = tolerance_s

    async def create_payment(self, session: AsyncSession, payment_id: str, amount: int,
                             currency: str, description: str, save_method: bool = False,
                             method_id: str | None = None) -> ProviderPayment:
        if method_id is None:
            return self.issue(payment_id)
        if not method_id.startswith("sbx_pm_"):
            raise BadRequest("the sandbox does not know this payment method",
                             slug="unknown-payment-method")
        return ProviderPayment(provider_payment_id=f"sbx_{uuid.uuid4().hex}",
                               confirmation_url=None, succeeded=True)

    def issue(self, payment_id: str) -> ProviderPayment:
        return ProviderPayment(
            provider_payment_id=f"sbx_{uuid.uuid4().hex}",
            confirmation_url=f"{self.public_url}/api/v1/payments/{payment_id}/sandbox-checkout",
        )

    async def refund(self, refund_id: str, provider_payment_id: str, amount: int,
                     currency: str) -> ProviderRefund:
        return ProviderRefund(provider_refund_id=f"sbx_rf_{refund_id}", succeeded=True)

    async def checkout(self, session: AsyncSession, provider_payment_id: str, outcome: str,
                       copies: int = 1, reverse: bool = False, save_method: bool = False) -> int:
        """The payer decides; queue the webhooks a provider would send (returns how many).

        ``copies`` > 1 delivers each notification several times and ``reverse`` sends the final
        outcome before the "processing" one: what real providers do on a bad day. A payment
        made with ``save_method`` reports the card it kept (``Card *4444``) when it succeeds.
        """
        if outcome not in ("succeeded", "failed"):
            raise BadRequest("outcome must be succeeded or failed")
        kept = save_method and outcome == "succeeded"
        bodies = [self._notification("processing", provider_payment_id),
                  self._notification(outcome, provider_payment_id, kept)]
        if reverse:
            bodies.reverse()
        rows = [{"body": body} for body in bodies for _ in range(max(1, copies))]
        await session.execute(insert(sandbox_webhooks), rows)
        return len(rows)

    def _notification(self, outcome: str, provider_payment_id: str, kept: bool = False) -> str:
        payment: dict[str, Any] = {"id": provider_payment_id, "status": outcome}
        if kept:
            payment["payment_method"] = {"id": f"sbx_pm_{provider_payment_id}", "saved": True,
                                         "type": "bank_card", "title": "Card *4444"}
        return json.dumps({"event_id": uuid.uuid4().hex, "type": f"payment.{outcome}",
                           "object": payment})

    def signed_headers(self, body: str, timestamp: int) -> dict[str, str]:
        return {"Content-Type": "application/json",
                signing.TIMESTAMP_HEADER: str(timestamp),
                signing.SIGNATURE_HEADER: signing.sign(self.secret, timestamp, body.encode())}

    async def verify_webhook(self, headers: dict[str, str], body: bytes,
                             now: float) -> Notification:
        lowered = {k.lower(): v for k, v in headers.items()}
        signing.verify(self.secret, lowered.get(signing.TIMESTAMP_HEADER.lower()),
                       lowered.get(signing.SIGNATURE_HEADER.lower()), body, now,
                       self.tolerance_s)
        try:
            data: dict[str, Any] = json.loads(body)
            status = _OUTCOMES[data["object"]["status"]]
            return Notification(event_id=str(data["event_id"]),
                                provider_payment_id=str(data["object"]["id"]), status=status,
                                method=saved_method(data["object"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest("the webhook body is not a sandbox notification") from exc


def saved_method(payment: dict[str, Any]) -> SavedMethod | None:
    """The method a provider's payment object says it kept (YooKassa's and the sandbox's
    ``payment_method`` with ``saved: true``)."""
    method = payment.get("payment_method") or {}
    if not method.get("saved"):
        return None
    return SavedMethod(provider_method_id=str(method["id"]), type=str(method.get("type", "card")),
                       title=str(method.get("title") or method.get("type") or "payment method"))


def provider_named(providers: dict[str, Provider], name: str) -> Provider:
    provider = providers.get(name)
    if provider is None:
        raise NotFound(f"no payment provider is called {name!r}", slug="unknown-provider")
    return provider
