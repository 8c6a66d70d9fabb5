"""Payment routes: payments, their Pay links, refunds, provider webhooks, the sandbox checkout."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from serve.gateway.deps import PublicContext, ServicesDep, UserContext
from serve.payments.schemas import (
    CheckoutIn,
    CheckoutOut,
    PaymentIn,
    PaymentList,
    PaymentMethodList,
    PaymentOut,
    RefundIn,
    RefundOut,
    WebhookOut,
)

router = APIRouter(prefix="/api/v1", tags=["payments"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


@router.post("/payments", response_model=PaymentOut,
             summary="The payment of a kind for a registration (existing or new)")
async def create_payment(body: PaymentIn, ctx: UserContext, services: ServicesDep,
                         idempotency_key: IdempotencyKey = None) -> Any:
    return await services.payment.create_payment(ctx, body.registration_id, body.kind,
                                                 idempotency_key, body.save_payment_method,
                                                 body.payment_method_id)


@router.get("/payments/methods", response_model=PaymentMethodList,
            summary="Your saved payment methods (one-click payments)")
async def list_methods(ctx: UserContext, services: ServicesDep) -> Any:
    return await services.payment.list_methods(ctx)


@router.delete("/payments/methods/{method_id}", status_code=204, response_class=Response,
               summary="Forget one of your saved payment methods")
async def delete_method(method_id: str, ctx: UserContext, services: ServicesDep) -> Response:
    await services.payment.delete_method(ctx, method_id)
    return Response(status_code=204)


@router.get("/payments", response_model=PaymentList,
            summary="Payments of a registration, or of an event with a count by status")
async def list_payments(ctx: UserContext, services: ServicesDep,
                        registration_id: Annotated[str | None, Query()] = None,
                        event_id: Annotated[str | None, Query()] = None,
                        cursor: Annotated[str | None, Query()] = None,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Any:
    return await services.payment.list_payments(ctx, registration_id, event_id, cursor, limit)


@router.get("/payments/{payment_id}", response_model=PaymentOut, summary="One payment")
async def get_payment(payment_id: str, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.payment.get_payment(ctx, payment_id)


@router.post("/payments/{payment_id}/refund", response_model=RefundOut,
             summary="Refund all (no amount) or part of a captured payment")
async def refund(payment_id: str, body: RefundIn, ctx: UserContext, services: ServicesDep,
                 idempotency_key: IdempotencyKey = None) -> Any:
    amount = body.amount.amount if body.amount else None
    currency = body.amount.currency if body.amount else None
    return await services.payment.refund_payment(ctx, payment_id, amount, currency,
                                                 body.reason, idempotency_key)


@router.post("/payments/{payment_id}/sandbox-checkout", response_model=CheckoutOut,
             status_code=status.HTTP_202_ACCEPTED,
             summary="Play the payer at the sandbox provider; it then calls the webhook")
async def sandbox_checkout(payment_id: str, body: CheckoutIn, ctx: UserContext,
                           services: ServicesDep) -> Any:
    return await services.payment.sandbox_checkout(ctx, payment_id, body.outcome,
                                                   body.copies, body.reverse)


@router.get("/payments/{payment_id}/pay", status_code=status.HTTP_303_SEE_OTHER,
            response_class=RedirectResponse,
            summary="The payment's Pay link: on to the provider's page (issued there first)",
            responses={303: {"description": "the provider's page for this payment"},
                       409: {"description": "already paid, or no longer payable"}})
async def pay(payment_id: str, ctx: PublicContext, services: ServicesDep) -> RedirectResponse:
    opened = await services.payment.open_payment(ctx, payment_id)
    return RedirectResponse(opened["location"], status_code=status.HTTP_303_SEE_OTHER)


@router.post("/webhooks/{provider}", response_model=WebhookOut,
             summary="Notifications from a payment provider (signed)")
async def webhook(provider: str, request: Request, ctx: PublicContext,
                  services: ServicesDep) -> Any:
    body = await request.body()
    return await services.payment.handle_webhook(ctx, provider, dict(request.headers), body)
