"""The paid flow through the running platform: registration -> payment -> webhook -> ticket.

Payment creation, confirmation and cancellation travel as domain events over RabbitMQ;
the sandbox provider calls the platform's webhook by itself, signed, duplicated and out of order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.conftest import RunningPlatform
from tests.e2e.test_event_flow import account, auth, organization


def eventually(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def paid_event(http: httpx.Client, owner: dict[str, Any], price: int,
               prepayment: int | None = None) -> tuple[str, str]:
    start = datetime.now(UTC) + timedelta(days=30)
    event = http.post("/api/v1/events", headers=auth(owner), json={
        "organization_id": organization(http, owner), "title": "Concert", "venue": "Hall",
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=2)).isoformat(),
        "visibility": "public", "participants_visibility": "closed"}).json()
    ticket: dict[str, Any] = {"name": "Stalls", "price": {"amount": price, "currency": "RUB"},
                              "quantity": 10}
    if prepayment is not None:
        ticket["prepayment_amount"] = prepayment
    tt = http.post(f"/api/v1/events/{event['id']}/ticket-types", headers=auth(owner),
                   json=ticket)
    assert tt.status_code == 201, tt.text
    assert http.post(f"/api/v1/events/{event['id']}/publish", headers=auth(owner)).is_success
    return event["id"], tt.json()["id"]


def payment_of(http: httpx.Client, who: dict[str, Any], registration_id: str,
               kind: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        items = http.get("/api/v1/payments", params={"registration_id": registration_id},
                         headers=auth(who)).json()["items"]
        return next((p for p in items if p["kind"] == kind), None)

    payment: dict[str, Any] = eventually(found, f"the {kind} payment")
    return payment


def status(http: httpx.Client, who: dict[str, Any], path: str, wanted: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body: dict[str, Any] = http.get(path, headers=auth(who)).json()
        return body if body["status"] == wanted else None

    result: dict[str, Any] = eventually(reached, f"{path} to be {wanted}")
    return result


def test_full_payment_confirms_then_a_full_refund_cancels(platform: RunningPlatform) -> None:
    with platform.client() as http:
        owner = account(http, f"org-{uuid.uuid4().hex[:8]}@example.org")
        fan = account(http, f"fan-{uuid.uuid4().hex[:8]}@example.org")
        event_id, tt_id = paid_event(http, owner, price=2_500)
        reg = http.post(f"/api/v1/events/{event_id}/registrations", headers=auth(fan),
                        json={"ticket_type_id": tt_id, "quantity": 2, "payment_mode": "full"})
        assert reg.status_code == 201 and reg.json()["status"] == "pending_payment", reg.text
        reg_id = reg.json()["id"]

        payment = payment_of(http, fan, reg_id, "full")
        assert payment["status"] == "pending"
        assert payment["amount"] == {"amount": 5_000, "currency": "RUB"}
        same = http.post("/api/v1/payments", headers=auth(fan),
                         json={"registration_id": reg_id, "kind": "full"})
        assert same.json()["id"] == payment["id"]
        stranger = account(http, f"x-{uuid.uuid4().hex[:8]}@example.org")
        assert http.get(f"/api/v1/payments/{payment['id']}",
                        headers=auth(stranger)).status_code == 403
        # The Pay link (a Telegram URL button: no token) leads on to the provider's page.
        link = http.get(f"/api/v1/payments/{payment['id']}/pay")
        assert link.status_code == 303 and link.headers["location"] == payment[
            "confirmation_url"], link.text

        checkout = http.post(f"/api/v1/payments/{payment['id']}/sandbox-checkout",
                             headers=auth(fan),
                             json={"outcome": "succeeded", "copies": 3, "reverse": True})
        assert checkout.status_code == 202 and checkout.json()["webhooks_queued"] == 6
        done = status(http, fan, f"/api/v1/payments/{payment['id']}", "completed")
        assert done["captured"]["amount"] == 5_000
        paid = http.get(f"/api/v1/payments/{payment['id']}/pay")
        assert paid.status_code == 409, paid.text
        assert paid.headers["content-type"].startswith("application/problem+json")
        confirmed = status(http, fan, f"/api/v1/registrations/{reg_id}", "confirmed")
        assert confirmed["ticket_code"]

        forged = http.post("/api/v1/webhooks/sandbox", content=b'{"event_id":"x"}',
                           headers={"X-Afisha-Timestamp": str(int(time.time())),
                                    "X-Afisha-Signature": "v1=00"})
        assert forged.status_code == 401
        assert http.post("/api/v1/webhooks/nobody", content=b"{}").status_code == 404

        assert http.post(f"/api/v1/payments/{payment['id']}/refund", headers=auth(fan),
                         json={}).status_code == 403
        partial = http.post(f"/api/v1/payments/{payment['id']}/refund", headers=auth(owner),
                            json={"amount": {"amount": 1_000, "currency": "RUB"}})
        assert partial.status_code == 200, partial.text
        assert partial.json()["payment_status"] == "partially_refunded"
        too_much = http.post(f"/api/v1/payments/{payment['id']}/refund", headers=auth(owner),
                             json={"amount": {"amount": 4_001, "currency": "RUB"}})
        assert too_much.status_code == 409
        rest = http.post(f"/api/v1/payments/{payment['id']}/refund",
                         headers={**auth(owner), "Idempotency-Key": "r-1"},
                         json={"reason": "changed plans"})
        assert rest.json()["amount"]["amount"] == 4_000
        replay = http.post(f"/api/v1/payments/{payment['id']}/refund",
                           headers={**auth(owner), "Idempotency-Key": "r-1"},
                           json={"reason": "changed plans"})
        assert replay.json() == rest.json()
        status(http, fan, f"/api/v1/registrations/{reg_id}", "cancelled")


def test_prepayment_then_remainder_and_event_cancellation(platform: RunningPlatform) -> None:
    with platform.client() as http:
        owner = account(http, f"org-{uuid.uuid4().hex[:8]}@example.org")
        fan = account(http, f"fan-{uuid.uuid4().hex[:8]}@example.org")
        event_id, tt_id = paid_event(http, owner, price=10_000, prepayment=3_000)
        reg = http.post(f"/api/v1/events/{event_id}/registrations", headers=auth(fan),
                        json={"ticket_type_id": tt_id, "payment_mode": "prepayment"})
        assert reg.status_code == 201, reg.text
        reg_id = reg.json()["id"]
        deposit = payment_of(http, fan, reg_id, "prepayment")
        assert deposit["amount"]["amount"] == 3_000
        http.post(f"/api/v1/payments/{deposit['id']}/sandbox-checkout", headers=auth(fan),
                  json={"outcome": "succeeded"})
        status(http, fan, f"/api/v1/registrations/{reg_id}", "confirmed")
        rest = http.post("/api/v1/payments", headers=auth(fan),
                         json={"registration_id": reg_id, "kind": "remainder"})
        assert rest.status_code == 200 and rest.json()["amount"]["amount"] == 7_000, rest.text
        http.post(f"/api/v1/payments/{rest.json()['id']}/sandbox-checkout", headers=auth(fan),
                  json={"outcome": "succeeded"})
        status(http, fan, f"/api/v1/payments/{rest.json()['id']}", "completed")

        assert http.post(f"/api/v1/events/{event_id}/cancel", headers=auth(owner)).is_success
        for pid in (deposit["id"], rest.json()["id"]):
            refunded = status(http, fan, f"/api/v1/payments/{pid}", "refunded")
            assert refunded["refunded"] == refunded["captured"]
        progress = http.get("/api/v1/payments", params={"event_id": event_id},
                            headers=auth(owner))
        assert progress.status_code == 200, progress.text
        assert progress.json()["by_status"] == {"refunded": 2}
        assert http.get("/api/v1/payments", params={"event_id": event_id},
                        headers=auth(fan)).status_code == 403
        assert http.get("/api/v1/payments", headers=auth(owner)).status_code == 400


def test_a_saved_card_pays_the_next_ticket_in_one_step(platform: RunningPlatform) -> None:
    with platform.client() as http:
        owner = account(http, f"org-{uuid.uuid4().hex[:8]}@example.org")
        fan = account(http, f"fan-{uuid.uuid4().hex[:8]}@example.org")
        event_id, tt_id = paid_event(http, owner, price=1_500)

        def registered() -> str:
            reg = http.post(f"/api/v1/events/{event_id}/registrations", headers=auth(fan),
                            json={"ticket_type_id": tt_id, "quantity": 1,
                                  "payment_mode": "full"})
            assert reg.status_code == 201, reg.text
            return str(reg.json()["id"])

        first = registered()
        payment = payment_of(http, fan, first, "full")
        keep = http.post("/api/v1/payments", headers=auth(fan), json={
            "registration_id": first, "kind": "full", "save_payment_method": True})
        assert keep.status_code == 200 and keep.json()["id"] == payment["id"], keep.text
        http.post(f"/api/v1/payments/{payment['id']}/sandbox-checkout", headers=auth(fan),
                  json={"outcome": "succeeded"})
        kept = eventually(lambda: http.get("/api/v1/payments/methods",
                                           headers=auth(fan)).json()["items"], "a kept card")
        assert [(m["title"], m["provider"]) for m in kept] == [("Card *4444", "sandbox")]

        second = registered()
        pending = payment_of(http, fan, second, "full")
        charged = http.post("/api/v1/payments", headers=auth(fan), json={
            "registration_id": second, "kind": "full", "payment_method_id": kept[0]["id"]})
        assert charged.status_code == 200, charged.text
        assert charged.json()["id"] == pending["id"]
        assert charged.json()["status"] == "completed"
        assert charged.json()["confirmation_url"] is None
        status(http, fan, f"/api/v1/registrations/{second}", "confirmed")

        stranger = account(http, f"x-{uuid.uuid4().hex[:8]}@example.org")
        assert http.get("/api/v1/payments/methods", headers=auth(stranger)).json()["items"] == []
        assert http.delete(f"/api/v1/payments/methods/{kept[0]['id']}",
                           headers=auth(stranger)).status_code == 404
        assert http.delete(f"/api/v1/payments/methods/{kept[0]['id']}",
                           headers=auth(fan)).status_code == 204
        assert http.get("/api/v1/payments/methods", headers=auth(fan)).json()["items"] == []
