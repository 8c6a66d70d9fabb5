"""A local stand-in for the YooKassa API v3, speaking its payload shapes, for provider tests.

Basic auth and ``Idempotence-Key`` are required like on the real API; a repeated key returns the
first answer. ``POST /_control/payments/{id}`` lets a test play the payer (set the status).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request


def create_app(shop_id: str, secret_key: str) -> FastAPI:
    app = FastAPI()
    payments: dict[str, dict[str, Any]] = {}
    refunds: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[str, Any]] = {}
    app.state.payments, app.state.refunds, app.state.requests = payments, refunds, []

    def check(request: Request, key: str | None, needs_key: bool) -> None:
        expected = "Basic " + base64.b64encode(f"{shop_id}:{secret_key}".encode()).decode()
        if request.headers.get("authorization") != expected:
            raise HTTPException(401, {"type": "error", "code": "invalid_credentials"})
        if needs_key and not key:
            raise HTTPException(400, {"type": "error", "code": "invalid_request",
                                      "description": "Idempotence-Key header is required"})
        app.state.requests.append((request.method, request.url.path, key))

    def now() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @app.post("/v3/payments")
    async def create(request: Request, key: str | None = Header(None, alias="Idempotence-Key")
                     ) -> dict[str, Any]:
        check(request, key, needs_key=True)
        if key in answers:
            return answers[key]
        body = await request.json()
        pid = f"2d{uuid.uuid4().hex[:30]}"
        payments[pid] = {
            "id": pid, "status": "pending", "paid": False, "amount": body["amount"],
            "confirmation": {"type": "redirect",
                             "confirmation_url": f"https://yoomoney.example/checkout?orderId={pid}"},
            "created_at": now(), "description": body.get("description"),
            "metadata": body.get("metadata", {}), "recipient": {"account_id": shop_id},
            "refundable": False, "test": True,
        }
        if body.get("save_payment_method"):
            payments[pid]["payment_method"] = {"type": "bank_card", "id": f"pm-{pid}",
                                               "saved": False, "title": "Bank card *4444"}
        if "payment_method_id" in body:  # a saved method: charged without the payer
            method = next((p["payment_method"] for p in payments.values()
                           if p.get("payment_method", {}).get("id") == body["payment_method_id"]
                           and p["payment_method"]["saved"]), None)
            if method is None:
                del payments[pid]
                raise HTTPException(400, {"type": "error", "code": "invalid_request",
                                          "parameter": "payment_method_id"})
            payments[pid].update(status="succeeded", paid=True, payment_method=method,
                                 captured_at=now(), refundable=True)
            del payments[pid]["confirmation"]
        answers[str(key)] = payments[pid]
        return payments[pid]

    @app.get("/v3/payments/{pid}")
    async def get(pid: str, request: Request) -> dict[str, Any]:
        check(request, None, needs_key=False)
        if pid not in payments:
            raise HTTPException(404, {"type": "error", "code": "not_found"})
        return payments[pid]

    @app.post("/v3/payments/{pid}/capture")
    async def capture(pid: str, request: Request,
                      key: str | None = Header(None, alias="Idempotence-Key")) -> dict[str, Any]:
        check(request, key, needs_key=True)
        payment = payments[pid]
        if payment["status"] == "waiting_for_capture":
            payment.update(status="succeeded", paid=True, captured_at=now(), refundable=True)
        return payment

    @app.post("/v3/refunds")
    async def refund(request: Request, key: str | None = Header(None, alias="Idempotence-Key")
                     ) -> dict[str, Any]:
        check(request, key, needs_key=True)
        if key in answers:
            return answers[key]
        body = await request.json()
        rid = f"2e{uuid.uuid4().hex[:30]}"
        refunds[rid] = {"id": rid, "payment_id": body["payment_id"], "status": "succeeded",
                        "created_at": now(), "amount": body["amount"]}
        answers[str(key)] = refunds[rid]
        return refunds[rid]

    @app.post("/_control/payments/{pid}")
    async def set_status(pid: str, request: Request) -> dict[str, Any]:
        body = await request.json()
        payments[pid]["status"] = body["status"]
        if body["status"] == "succeeded" and "payment_method" in payments[pid]:
            payments[pid]["payment_method"]["saved"] = True
        if body["status"] == "canceled":
            payments[pid]["cancellation_details"] = {"party": "yoo_money",
                                                     "reason": "insufficient_funds"}
        return payments[pid]

    return app
