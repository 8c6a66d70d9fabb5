"""Serve deployment of the payment service: typed async methods other deployments call."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from ray.serve.handle import DeploymentHandle
from sqlalchemy import select

from cluster.settings import reveal
from messaging.consumer import BatchHandler, Handler
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.common.clients import ServiceClient
from serve.common.context import RequestContext, bound, correlation_id_var
from serve.common.errors import BadRequest, Forbidden, NotFound, Unauthorized
from serve.common.service import ServiceBase
from serve.events.client import EventClient
from serve.payments import (
    checkout,
    idempotency,
    intake,
    methods,
    orders,
    refunds,
    remainder,
    service,
)
from serve.payments.delivery import SandboxDeliverer
from serve.payments.domain import Kind
from serve.payments.providers import Provider, SandboxProvider, provider_named
from serve.payments.yookassa import YooKassaProvider
from storage.payment import payments


class PaymentService(ServiceBase):
    service = "payment"

    async def __init__(self, config: dict[str, Any],  # type: ignore[misc]
                       event: DeploymentHandle) -> None:
        super().__init__(config)
        self.event = EventClient(ServiceClient("event", event,
                                               self.settings.service_call_timeout_seconds))
        base = self.settings.api_base_url
        self.sandbox = SandboxProvider(reveal(self.settings.sandbox_webhook_secret) or "", base,
                                       self.settings.webhook_tolerance_seconds)
        self.deliverer = SandboxDeliverer(self.sessions, self.sandbox,
                                          f"{base}/api/v1/webhooks/sandbox", self.log,
                                          self.settings.listening_poll_seconds)
        self.providers: dict[str, Provider] = {}
        if self.settings.payment_provider is None:
            raise RuntimeError("AFISHA_PAYMENT_PROVIDER is not set (afisha run and deploy "
                               "resolve it before the payment service starts)")
        if self.settings.payment_provider == "yookassa":
            self.providers["yookassa"] = YooKassaProvider(
                str(self.settings.yookassa_shop_id), str(reveal(self.settings.yookassa_secret_key)),
                self.settings.yookassa_api_url, return_url=base)
        else:
            self.providers["sandbox"] = self.sandbox
            self._delivery = asyncio.get_running_loop().create_task(self.deliverer.run())
        self._sweeper = asyncio.get_running_loop().create_task(self.sweep_remainders())
        self.refunds_due = asyncio.Event()
        self._refunder = asyncio.get_running_loop().create_task(self.make_refunds())

    def uow(self, ctx: RequestContext | None = None) -> UnitOfWork:
        return UnitOfWork(self.sessions, "payment", ctx)

    @property
    def provider(self) -> Provider:
        return self.providers[str(self.settings.payment_provider)]

    # --- public API (called by the gateway) ---
    async def create_payment(self, ctx: RequestContext, registration_id: str, kind: str,
                             idempotency_key: str | None, save_method: bool = False,
                             method_id: str | None = None) -> dict[str, Any]:
        with bound(ctx):
            user_id = _user(ctx)
            async with self.sessions() as session:
                reg = await orders.load(session, registration_id)
            if reg.user_id != user_id:
                raise Forbidden("only the attendee pays for a registration")

            async def operation(uow: UnitOfWork) -> dict[str, Any]:
                return await service.create_payment(uow, self.provider, reg, Kind(kind),
                                                    save_method, method_id)

            request: dict[str, Any] = {"registration_id": registration_id, "kind": kind}
            if save_method or method_id:
                request |= {"save_payment_method": save_method, "payment_method_id": method_id}
            return await idempotency.run_once(
                self.sessions, lambda: self.uow(ctx), f"{user_id}:create-payment",
                idempotency_key, request, operation)

    async def list_methods(self, ctx: RequestContext) -> dict[str, Any]:
        with bound(ctx):
            async with self.sessions() as session:
                return await methods.listed(session, _user(ctx))

    async def delete_method(self, ctx: RequestContext, method_id: str) -> None:
        with bound(ctx):
            async with self.sessions() as session, session.begin():
                await methods.forget(session, _user(ctx), method_id)

    async def get_payment(self, ctx: RequestContext, payment_id: str) -> dict[str, Any]:
        with bound(ctx):
            async with self.sessions() as session:
                row = await service.load(session, payment_id)
            await self._may_see(ctx, row)
            return service.view(row)

    async def list_payments(self, ctx: RequestContext, registration_id: str | None,
                            event_id: str | None = None, cursor: str | None = None,
                            limit: int = 100) -> dict[str, Any]:
        """A registration's payments (payer, organizers, admins), or an event's payments with a
        count by status (organizers, admins) — e.g. the progress of refunds after a cancellation."""
        with bound(ctx):
            if (registration_id is None) == (event_id is None):
                raise BadRequest("give exactly one of registration_id and event_id")
            if event_id is not None:
                if not await self._organizes(ctx, {"event_id": event_id}):
                    raise Forbidden("only the event's organizers and admins list its payments")
                async with self.sessions() as session:
                    return await service.event_payments(
                        session, service.parse_id(event_id), cursor, limit)
            async with self.sessions() as session:
                rows = (await session.execute(
                    select(payments).where(payments.c.registration_id == service.parse_id(str(
                        registration_id))).order_by(payments.c.created_at))).mappings().all()
            for row in rows[:1]:
                await self._may_see(ctx, row)
            return {"items": [service.view(r) for r in rows], "next_cursor": None}

    async def refund_payment(self, ctx: RequestContext, payment_id: str, amount: int | None,
                             currency: str | None, reason: str | None,
                             idempotency_key: str | None) -> dict[str, Any]:
        with bound(ctx):
            async with self.sessions() as session:
                row = await service.load(session, payment_id)
            if not await self._organizes(ctx, row):
                raise Forbidden("only the event's organizers and admins refund payments")
            if currency is not None and currency != row["currency"]:
                raise BadRequest(f"this payment is in {row['currency']}, not {currency}")
            scope = f"{_user(ctx)}:refund:{payment_id}"
            cause = f"api:{scope}:{idempotency_key or uuid.uuid4()}"

            async def operation() -> dict[str, Any]:
                return await service.refund(self.sessions, self.providers, payment_id, amount,
                                            reason, cause)

            return await idempotency.run_outside(
                self.sessions, scope, idempotency_key,
                {"amount": amount, "currency": currency, "reason": reason}, operation)

    async def sandbox_checkout(self, ctx: RequestContext, payment_id: str, outcome: str,
                               copies: int = 1, reverse: bool = False) -> dict[str, Any]:
        """The sandbox payer's decision; the provider then calls our webhook on its own."""
        with bound(ctx):
            async with self.sessions() as session, session.begin():
                row = await service.load(session, payment_id)
                if row["provider"] != "sandbox":
                    raise NotFound("sandbox checkout exists only for sandbox payments")
                if str(row["user_id"]) != _user(ctx):
                    raise Forbidden("only the payer checks out a payment")
                queued = await self.sandbox.checkout(session, str(row["provider_payment_id"]),
                                                     outcome, copies, reverse,
                                                     save_method=row["save_method"])
            self.deliverer.wake.set()
            return {"payment_id": payment_id, "outcome": outcome, "webhooks_queued": queued}

    async def open_payment(self, ctx: RequestContext, payment_id: str) -> dict[str, Any]:
        """Where the payer pays: the provider's page, the payment issued there first when it
        is not yet (``serve.payments.checkout``)."""
        with bound(ctx):
            location = await checkout.open_payment(self.sessions, self.provider, payment_id)
            return {"location": location}

    async def handle_webhook(self, ctx: RequestContext, provider_name: str,
                             headers: dict[str, str], body: bytes) -> dict[str, Any]:
        with bound(ctx):
            provider = provider_named(self.providers, provider_name)
            note = await provider.verify_webhook(headers, body, time.time())
            async with self.uow(ctx) as uow:
                outcome = await service.apply_notification(uow, provider, note,
                                                            {"raw": body.decode("utf-8",
                                                                                "replace")})
            self.log.info("webhook %s from %s: %s", note.event_id, provider_name, outcome)
            return {"result": outcome}

    # --- consumed domain events ---
    def message_handlers(self) -> dict[str, Handler]:
        return {"registration.created": BatchHandler(self.on_registrations_created),
                "registration.cancelled": self.on_registration_cancelled,
                "event.cancelled": self.on_event_cancelled,
                "event.updated": self.on_event_updated}

    async def on_registrations_created(self, uow: UnitOfWork,
                                       envelopes: list[Envelope]) -> None:
        """Paid registrations get their pending payments (full, or the prepayment), a
        delivered batch of them in one transaction."""
        await intake.create_pending_payments(uow, self.provider, envelopes, self._starts_at,
                                             self.settings.api_base_url)

    async def on_registration_cancelled(self, uow: UnitOfWork, envelope: Envelope) -> None:
        """Policy: a cancelled registration is refunded in full and its unpaid payments fail
        (attendee cancellation, or a payment that arrived after its seats were sold)."""
        data = envelope.data
        if await service.refund_registration(uow, data["registration_id"],
                                             f"registration cancelled: {data['reason']}"):
            self.refunds_due.set()

    async def on_event_cancelled(self, uow: UnitOfWork, envelope: Envelope) -> None:
        recorded = await service.refund_event(uow, envelope.data["event_id"])
        self.log.info("event %s cancelled: %d refunds recorded", envelope.data["event_id"],
                      recorded)
        if recorded:
            self.refunds_due.set()

    async def on_event_updated(self, uow: UnitOfWork, envelope: Envelope) -> None:
        """An event moved: its prepaid orders' remainder deadlines follow the new start."""
        data = envelope.data
        if "starts_at" in data["changed"]:
            await orders.reschedule(uow.session, data["event_id"],
                                    datetime.fromisoformat(data["starts_at"]))

    async def _starts_at(self, event_id: str) -> datetime | None:
        event = await self.event.event_for_service(RequestContext(correlation_id_var.get()),
                                                   event_id)
        return datetime.fromisoformat(event["starts_at"]) if event else None

    async def sweep_remainders(self) -> None:
        """Remainder reminders and deadlines (see ``serve.payments.remainder``), periodically."""
        while True:
            await asyncio.sleep(self.settings.payment_sweep_seconds)
            try:
                async with self.uow() as uow:
                    await remainder.sweep(uow, datetime.now(UTC),
                                          self.settings.remainder_due_hours_before_start,
                                          self.settings.remainder_reminder_hours)
            except Exception:
                self.log.exception("remainder sweep failed; retrying on the next round")

    async def make_refunds(self) -> None:
        """Recorded refund intents reach the provider (``serve.payments.refunds``): soon after
        a cancellation is consumed, and every ``AFISHA_REFUND_SWEEP_SECONDS`` for any left by
        a crash or a provider that did not answer."""
        while True:
            try:
                await asyncio.wait_for(self.refunds_due.wait(),
                                       self.settings.refund_sweep_seconds)
                await asyncio.sleep(0.2)  # the consumer's transaction commits meanwhile
            except TimeoutError:
                pass
            self.refunds_due.clear()
            try:
                settled, waiting = await refunds.resume(self.sessions, self.providers)
                if settled or waiting:
                    self.log.info("refunds: %d settled, %d refused or waiting", settled, waiting)
            except Exception:
                self.log.exception("refund sweep failed; retrying on the next round")

    # --- authorization ---
    async def _may_see(self, ctx: RequestContext, row: Any) -> None:
        if str(row["user_id"]) == _user(ctx) or await self._organizes(ctx, row):
            return
        raise Forbidden("only the payer, the event's organizers and admins see a payment")

    async def _organizes(self, ctx: RequestContext, row: Any) -> bool:
        if ctx.identity is not None and ctx.identity.is_admin:
            return True
        return await self.event.can_manage_event(ctx, str(row["event_id"]))


def _user(ctx: RequestContext) -> str:
    if ctx.identity is None:
        raise Unauthorized("sign in first")
    return ctx.identity.user_id
