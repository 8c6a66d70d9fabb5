"""YooKassa (API v3) provider.

Payments are created with ``capture: true`` and an ``Idempotence-Key`` equal to our payment id,
so a retried create never charges twice. Notifications are not signed by YooKassa, so a
notification is only a hint: the payment is fetched from the API and its status there is what
we act on. A payment reported ``waiting_for_capture`` is captured.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from serve.common.errors import BadRequest, ServiceUnavailable
from serve.payments.domain import Status
from serve.payments.providers import Notification, ProviderPayment, ProviderRefund, saved_method

_STATUS = {"pending": Status.PENDING, "waiting_for_capture": Status.PROCESSING,
           "succeeded": Status.COMPLETED, "canceled": Status.FAILED}


def to_value(amount: int) -> str:
    """Minor units to YooKassa's decimal string ("1050" kopecks -> "10.50")."""
    return f"{Decimal(amount) / 100:.2f}"


class YooKassaProvider:
    name = "yookassa"

    def __init__(self, shop_id: str, secret_key: str, api_url: str, return_url: str,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.return_url = return_url
        self.client = httpx.AsyncClient(base_url=api_url.rstrip("/") + "/",
                                        auth=(shop_id, secret_key), timeout=15,
                                        transport=transport)

    async def _call(self, method: str, path: str, key: str | None = None,
                    body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Idempotence-Key": key} if key else {}
        try:
            response = await self.client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"YooKassa is not reachable: {exc}") from exc
        if response.status_code >= 500:
            raise ServiceUnavailable(f"YooKassa answered {response.status_code}; retry")
        if response.is_error:
            raise BadRequest(f"YooKassa refused the request: {response.text[:300]}",
                             slug="provider-refused")
        result: dict[str, Any] = response.json()
        return result

    async def create_payment(self, session: AsyncSession, payment_id: str, amount: int,
                             currency: str, description: str, save_method: bool = False,
                             method_id: str | None = None) -> ProviderPayment:
        body: dict[str, Any] = {
            "amount": {"value": to_value(amount), "currency": currency},
            "capture": True,
            "description": description[:128],
            "metadata": {"payment_id": payment_id},
        }
        if method_id is not None:  # a saved method: charged without a payer step
            body["payment_method_id"] = method_id
        else:
            body["confirmation"] = {"type": "redirect", "return_url": self.return_url}
            if save_method:
                body["save_payment_method"] = True
        created = await self._call("POST", "payments", key=payment_id, body=body)
        confirmation = (created.get("confirmation") or {}).get("confirmation_url")
        return ProviderPayment(provider_payment_id=created["id"], confirmation_url=confirmation,
                               succeeded=created.get("status") == "succeeded")

    async def refund(self, refund_id: str, provider_payment_id: str, amount: int,
                     currency: str) -> ProviderRefund:
        made = await self._call("POST", "refunds", key=refund_id, body={
            "payment_id": provider_payment_id,
            "amount": {"value": to_value(amount), "currency": currency},
        })
        if made.get("status") == "canceled":
            raise BadRequest("YooKassa declined the refund", slug="refund-declined")
        return ProviderRefund(provider_refund_id=made["id"],
                              succeeded=made.get("status") == "succeeded")

    async def verify_webhook(self, headers: dict[str, str], body: bytes,
                             now: float) -> Notification:
        import json

        try:
            note = json.loads(body)
            event, provider_id = str(note["event"]), str(note["object"]["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest("the body is not a YooKassa notification") from exc
        if not event.startswith("payment."):
            raise BadRequest(f"notification {event!r} is not about a payment",
                             slug="unsupported-notification")
        current = await self._call("GET", f"payments/{provider_id}")
        if current["status"] == "waiting_for_capture":
            current = await self._call("POST", f"payments/{provider_id}/capture",
                                       key=f"capture-{provider_id}", body={})
        status = _STATUS.get(current["status"])
        if status is None:
            raise BadRequest(f"unknown YooKassa status {current['status']!r}")
        reason = (current.get("cancellation_details") or {}).get("reason")
        return Notification(event_id=f"{provider_id}:{current['status']}",
                            provider_payment_id=provider_id, status=status, reason=reason,
                            method=saved_method(current))

    async def aclose(self) -> None:
        await self.client.aclose()
