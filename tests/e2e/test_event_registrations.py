"""Registrations over HTTP against the running platform: no oversell, idempotency, tickets.

The events are written straight into the event schema (creating them over HTTP needs the user
service's organization roles); everything after that goes through the public API.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from serve.users.tokens import issue_access_token
from tests.conftest import make_settings
from tests.e2e.conftest import E2E_JWT_SECRET, RunningPlatform

SETTINGS = make_settings(jwt_secret=E2E_JWT_SECRET)
ANN = str(uuid.uuid4())


def auth(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(SETTINGS, user_id)}"}


async def seed_event(database_url: str, quantity: int, price: int) -> tuple[str, str]:
    event_id, tt = str(uuid.uuid4()), str(uuid.uuid4())
    start = datetime.now(UTC) + timedelta(days=10)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO event_service.events (id, organization_id, title, starts_at, ends_at, "
            "visibility, participants_visibility, status, created_by) "
            "VALUES ($1, $4, 'Sold out show', $2, $3, 'public', 'open', 'published', $5)",
            event_id, start, start + timedelta(hours=2), str(uuid.uuid4()), str(uuid.uuid4()))
        await conn.execute(
            "INSERT INTO event_service.ticket_types (id, event_id, name, price, currency, quantity)"
            " VALUES ($1, $2, 'GA', $3, 'RUB', $4)", tt, event_id, price, quantity)
    finally:
        await conn.close()
    return event_id, tt


async def count_registrations(database_url: str, event_id: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT status, sum(quantity) AS n FROM event_service.registrations"
                                " WHERE event_id = $1 GROUP BY status", event_id)
    finally:
        await conn.close()
    return {r["status"]: int(r["n"]) for r in rows}


async def test_500_concurrent_registrations_for_100_seats_over_http(
        platform: RunningPlatform, platform_database: str) -> None:
    event_id, tt = await seed_event(platform_database, quantity=100, price=1500)
    limits = httpx.Limits(max_connections=64)
    fans = [str(uuid.uuid4()) for _ in range(500)]
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=120, limits=limits) as http:
        responses = await asyncio.gather(*(http.post(
            f"/api/v1/events/{event_id}/registrations", headers=auth(fan),
            json={"ticket_type_id": tt}) for fan in fans))
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 100 and statuses.count(409) == 400
    refused = [r for r in responses if r.status_code == 409]
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused)
    assert all(r.json()["type"].endswith("/sold-out") for r in refused)
    created = [r.json() for r in responses if r.status_code == 201]
    assert all(c["status"] == "pending_payment" and c["reservation"]["expires_at"]
               for c in created)
    assert await count_registrations(platform_database, event_id) == {"pending_payment": 100}


async def test_idempotency_key_ticket_and_bad_input_over_http(
        platform: RunningPlatform, platform_database: str) -> None:
    event_id, tt = await seed_event(platform_database, quantity=5, price=0)
    url = f"/api/v1/events/{event_id}/registrations"
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=60) as http:
        headers = auth(ANN) | {"Idempotency-Key": "retry-me"}
        first = await http.post(url, headers=headers, json={"ticket_type_id": tt, "quantity": 2})
        again = await http.post(url, headers=headers, json={"ticket_type_id": tt, "quantity": 2})
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]
        assert first.json()["status"] == "confirmed"
        reg_id = first.json()["id"]
        mine = await http.get(f"/api/v1/registrations/{reg_id}", headers=auth(ANN))
        assert mine.status_code == 200 and mine.json()["ticket_code"]
        png = await http.get(f"/api/v1/registrations/{reg_id}/ticket", headers=auth(ANN))
        assert png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG")
        listed = await http.get("/api/v1/users/me/registrations", headers=auth(ANN))
        assert [r["id"] for r in listed.json()["items"]] == [reg_id]
        anonymous = await http.post(url, json={"ticket_type_id": tt})
        assert anonymous.status_code == 401
        bad = await http.post(url, headers=auth(ANN), json={"ticket_type_id": tt,
                                                             "quantity": "lots"})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        missing = await http.post(f"/api/v1/events/{uuid.uuid4()}/registrations",
                                  headers=auth(ANN), json={"ticket_type_id": tt})
        assert missing.status_code == 404
    assert await count_registrations(platform_database, event_id) == {"confirmed": 2}
