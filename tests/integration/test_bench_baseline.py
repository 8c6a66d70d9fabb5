"""The benchmark's row-lock baseline against real PostgreSQL: it must never oversell either,
or the comparison in ``make bench`` would be against a service that cheats."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import jwt
import pytest

from benchmarks.baseline import app as baseline
from tests.conftest import new_database

SECRET = "baseline-test-" + "k" * 40


def token(user_id: str, token_type: str = "access") -> str:
    now = datetime.now(UTC)
    return jwt.encode({"iss": "afisha", "aud": "afisha-api", "sub": user_id, "iat": now,
                       "exp": now + timedelta(minutes=5), "typ": token_type, "roles": []},
                      SECRET, algorithm="HS256")


@pytest.fixture
def baseline_database(pg_server: str) -> Iterator[str]:
    with new_database(pg_server, "baseline") as url:
        yield url


@pytest.fixture
async def client(baseline_database: str, monkeypatch: pytest.MonkeyPatch,
                 ) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    monkeypatch.setenv("BASELINE_DATABASE_URL", baseline_database)
    monkeypatch.setenv("BASELINE_JWT_SECRET", SECRET)
    async with baseline.lifespan(baseline.app):
        transport = httpx.ASGITransport(app=baseline.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://baseline") as http:
            yield http, baseline_database


async def seed(url: str, quantity: int) -> tuple[str, str]:
    event_id, tt = str(uuid.uuid4()), str(uuid.uuid4())
    conn = await asyncpg.connect(url)
    try:
        start = datetime.now(UTC) + timedelta(days=3)
        await conn.execute("INSERT INTO bench_baseline.events (id, organization_id, title, "
                           "starts_at, ends_at, status) VALUES ($1, 'org', 'Gig', $2, $3, "
                           "'published')", event_id, start, start + timedelta(hours=2))
        await conn.execute("INSERT INTO bench_baseline.ticket_types (id, event_id, name, price, "
                           "currency, quantity) VALUES ($1, $2, 'GA', 1000, 'RUB', $3)",
                           tt, event_id, quantity)
    finally:
        await conn.close()
    return event_id, tt


async def test_concurrent_buyers_never_oversell(
        client: tuple[httpx.AsyncClient, str]) -> None:
    http, url = client
    event_id, tt = await seed(url, 40)

    async def buy(n: int) -> int:
        response = await http.post(f"/api/v1/events/{event_id}/registrations",
                                   json={"ticket_type_id": tt},
                                   headers={"Authorization": f"Bearer {token(f'u{n}')}"})
        return response.status_code

    statuses = Counter(await asyncio.gather(*(buy(n) for n in range(150))))
    assert statuses == {201: 40, 409: 110}
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT t.taken, (SELECT count(*) FROM bench_baseline.registrations) AS regs, "
            "(SELECT count(*) FROM bench_baseline.reservations) AS holds, "
            "(SELECT count(*) FROM bench_baseline.outbox) AS events, "
            "(SELECT count(*) FROM bench_baseline.payments p JOIN bench_baseline.registrations r "
            " ON r.id = p.registration_id WHERE p.status = 'pending' AND p.amount = r.amount) "
            " AS payments, "
            "(SELECT count(DISTINCT d.data->>'registration_id') "
            " FROM bench_baseline.domain_events d WHERE d.type = 'registration.created' "
            " AND d.event_id = t.event_id) AS recorded "
            "FROM bench_baseline.ticket_types t WHERE t.id = $1", tt)
    finally:
        await conn.close()
    # Each sold seat is settled in its own transaction: pending payment and analytics row.
    assert dict(row) == {"taken": 40, "regs": 40, "holds": 40, "events": 40, "payments": 40,
                         "recorded": 40}


async def test_a_retried_key_returns_the_first_registration_and_bad_input_is_refused(
        client: tuple[httpx.AsyncClient, str]) -> None:
    http, url = client
    event_id, tt = await seed(url, 5)
    headers = {"Authorization": f"Bearer {token('buyer')}", "Idempotency-Key": "k-1"}
    path = f"/api/v1/events/{event_id}/registrations"
    first = await http.post(path, json={"ticket_type_id": tt, "quantity": 2}, headers=headers)
    again = await http.post(path, json={"ticket_type_id": tt, "quantity": 2}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    conn = await asyncpg.connect(url)
    try:  # the replay wrote no second payment or analytics row
        assert await conn.fetchval("SELECT count(*) FROM bench_baseline.payments") == 1
        assert await conn.fetchval("SELECT count(*) FROM bench_baseline.domain_events") == 1
    finally:
        await conn.close()
    tickets = await http.get(f"/api/v1/events/{event_id}/ticket-types")
    assert tickets.json()["items"][0]["available"] == 3

    refresh = {"Authorization": f"Bearer {token('buyer', 'refresh')}"}
    assert (await http.post(path, json={"ticket_type_id": tt}, headers=refresh)
            ).status_code == 401
    invalid = await http.post(path, json={"ticket_type_id": tt, "quantity": 0}, headers=headers)
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    unknown = await http.post(path, json={"ticket_type_id": "nope"},
                              headers={"Authorization": f"Bearer {token('other')}"})
    assert unknown.status_code == 404
