"""Typed client of the payment service (``serve.payments.deployment.PaymentService``)."""

from __future__ import annotations

from typing import Any, cast

from serve.common.clients import ClientBase
from serve.common.context import RequestContext

View = dict[str, Any]


class PaymentClient(ClientBase):
    async def create_payment(self, ctx: RequestContext, registration_id: str, kind: str,
                             idempotency_key: str | None, save_method: bool = False,
                             method_id: str | None = None) -> View:
        return cast(View, await self.transport.call(
            "create_payment", ctx, registration_id, kind, idempotency_key, save_method,
            method_id))

    async def list_methods(self, ctx: RequestContext) -> View:
        return cast(View, await self.transport.call("list_methods", ctx))

    async def delete_method(self, ctx: RequestContext, method_id: str) -> None:
        await self.transport.call("delete_method", ctx, method_id)

    async def list_payments(self, ctx: RequestContext, registration_id: str | None,
                            event_id: str | None, cursor: str | None, limit: int) -> View:
        return cast(View, await self.transport.call(
            "list_payments", ctx, registration_id, event_id, cursor, limit))

    async def get_payment(self, ctx: RequestContext, payment_id: str) -> View:
        return cast(View, await self.transport.call("get_payment", ctx, payment_id))

    async def refund_payment(self, ctx: RequestContext, payment_id: str, amount: int | None,
                             currency: str | None, reason: str | None,
                             idempotency_key: str | None) -> View:
        return cast(View, await self.transport.call(
            "refund_payment", ctx, payment_id, amount, currency, reason, idempotency_key))

    async def sandbox_checkout(self, ctx: RequestContext, payment_id: str, outcome: str,
                               copies: int, reverse: bool) -> View:
        return cast(View, await self.transport.call(
            "sandbox_checkout", ctx, payment_id, outcome, copies, reverse))

    async def open_payment(self, ctx: RequestContext, payment_id: str) -> View:
        return cast(View, await self.transport.call("open_payment", ctx, payment_id))

    async def handle_webhook(self, ctx: RequestContext, provider_name: str,
                             headers: dict[str, str], body: bytes) -> View:
        return cast(View, await self.transport.call(
            "handle_webhook", ctx, provider_name, headers, body))
