"""An organizer's event from creation to check-in, through the running platform."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.conftest import ADMIN_EMAIL, RunningPlatform

PASSWORD = "e2e password 123"


def auth(body: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['access_token']}"}


def account(http: httpx.Client, email: str) -> dict[str, Any]:
    made = http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD,
                                                     "display_name": email.split("@")[0]})
    if made.status_code == 409:
        made = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert made.status_code in (200, 201), made.text
    body: dict[str, Any] = made.json()
    return body


def organization(http: httpx.Client, owner: dict[str, Any]) -> str:
    admin = account(http, ADMIN_EMAIL)
    request = http.post("/api/v1/organization-requests", headers=auth(owner),
                        json={"name": f"Club {uuid.uuid4().hex[:6]}", "description": "x"})
    request_id = request.json()["id"]
    http.post(f"/api/v1/organization-requests/{request_id}/approve", headers=auth(admin))
    org = http.post("/api/v1/organizations", headers=auth(owner), json={"request_id": request_id})
    assert org.status_code == 201, org.text
    org_id: str = org.json()["id"]
    return org_id


def test_event_lifecycle_registration_and_check_in(platform: RunningPlatform) -> None:
    start = datetime.now(UTC) + timedelta(days=20)
    with platform.client() as http:
        owner = account(http, f"owner-{uuid.uuid4().hex[:8]}@example.org")
        fan = account(http, f"fan-{uuid.uuid4().hex[:8]}@example.org")
        org_id = organization(http, owner)
        event = {"organization_id": org_id, "title": "Jazz night", "venue": "Club",
                 "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=3))
                 .isoformat(), "visibility": "public", "participants_visibility": "closed"}
        assert http.post("/api/v1/events", headers=auth(fan), json=event).status_code == 403
        created = http.post("/api/v1/events", headers=auth(owner), json=event)
        assert created.status_code == 201 and created.json()["status"] == "draft"
        event_id = created.json()["id"]
        assert http.get(f"/api/v1/events/{event_id}").status_code == 404  # drafts are private
        tt = http.post(f"/api/v1/events/{event_id}/ticket-types", headers=auth(owner), json={
            "name": "Free entry", "price": {"amount": 0, "currency": "RUB"}, "quantity": 1})
        assert tt.status_code == 201, tt.text
        closed = http.post(f"/api/v1/events/{event_id}/registrations", headers=auth(fan),
                           json={"ticket_type_id": tt.json()["id"]})
        assert closed.status_code in (404, 409)  # not published yet
        assert http.post(f"/api/v1/events/{event_id}/publish",
                         headers=auth(owner)).json()["status"] == "published"
        again = http.post(f"/api/v1/events/{event_id}/publish", headers=auth(owner))
        assert again.status_code == 409 and again.json()["type"].endswith("/illegal-transition")
        assert http.get(f"/api/v1/events/{event_id}").json()["status"] == "published"
        anonymous = http.get(f"/api/v1/events/{event_id}/ticket-types")  # visitors see prices
        assert anonymous.status_code == 200, anonymous.text
        assert [(t["id"], t["available"]) for t in anonymous.json()["items"]] == [
            (tt.json()["id"], 1)]

        reg = http.post(f"/api/v1/events/{event_id}/registrations", headers=auth(fan),
                        json={"ticket_type_id": tt.json()["id"]})
        assert reg.status_code == 201 and reg.json()["status"] == "confirmed"
        sold_out = http.post(f"/api/v1/events/{event_id}/registrations", headers=auth(owner),
                             json={"ticket_type_id": tt.json()["id"]})
        assert sold_out.status_code == 409 and sold_out.json()["type"].endswith("/sold-out")
        mine = http.get(f"/api/v1/registrations/{reg.json()['id']}", headers=auth(fan)).json()
        listing = http.get(f"/api/v1/events/{event_id}/registrations", headers=auth(fan))
        assert listing.status_code == 403  # closed participant list
        check_in = f"/api/v1/registrations/{mine['id']}/check-in"
        body = {"ticket_code": mine["ticket_code"]}
        assert http.post(check_in, headers=auth(fan), json=body).status_code == 403
        done = http.post(check_in, headers=auth(owner), json=body)
        assert done.status_code == 200 and done.json()["checked_in_at"]
        twice = http.post(check_in, headers=auth(owner), json=body)
        assert twice.status_code == 409
        seen = http.get(f"/api/v1/events/{event_id}/registrations", headers=auth(owner)).json()
        assert [r["status"] for r in seen["items"]] == ["checked_in"]
