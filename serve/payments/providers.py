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
    confirmation_url: str


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


class Provider(Protocol):
    name: str

    async def create_payment(self, session: AsyncSession, payment_id: str, amount: int,
                             currency: str, description: str) -> ProviderPayment: ...

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
                             currency: str, description: str) -> ProviderPayment:
        return self.issue(payment_id)

    def issue(self, payment_id: str) -> ProviderPayment:
        return ProviderPayment(
            provider_payment_id=f"sbx_{uuid.uuid4().hex}",
            confirmation_url=f"{self.public_url}/api/v1/payments/{payment_id}/sandbox-checkout",
        )

    async def refund(self, refund_id: str, provider_payment_id: str, amount: int,
                     currency: str) -> ProviderRefund:
        return ProviderRefund(provider_refund_id=f"sbx_rf_{refund_id}", succeeded=True)

    async def checkout(self, session: AsyncSession, provider_payment_id: str, outcome: str,
                       copies: int = 1, reverse: bool = False) -> int:
        """The payer decides; queue the webhooks a provider would send (returns how many).

        ``copies`` > 1 delivers each notification several times and ``reverse`` sends the final
        outcome before the "processing" one: what real providers do on a bad day.
        """
        if outcome not in ("succeeded", "failed"):
            raise BadRequest("outcome must be succeeded or failed")
        bodies = [self._notification("processing", provider_payment_id),
                  self._notification(outcome, provider_payment_id)]
        if reverse:
            bodies.reverse()
        rows = [{"body": body} for body in bodies for _ in range(max(1, copies))]
        await session.execute(insert(sandbox_webhooks), rows)
        return len(rows)

    def _notification(self, outcome: str, provider_payment_id: str) -> str:
        return json.dumps({"event_id": uuid.uuid4().hex, "type": f"payment.{outcome}",
                           "object": {"id": provider_payment_id, "status": outcome}})

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
                                provider_payment_id=str(data["object"]["id"]), status=status)
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest("the webhook body is not a sandbox notification") from exc


def provider_named(providers: dict[str, Provider], name: str) -> Provider:
    provider = providers.get(name)
    if provider is None:
        raise NotFound(f"no payment provider is called {name!r}", slug="unknown-provider")
    return provider
