"""A flash sale driven through the API while a fault is injected, and the audit of what it left
in the database. Used by the fault suite (tests/chaos) and the node-failure test
(tests/multinode).

The clients do what a browser with an ``Idempotency-Key`` does: a 5xx, a timeout or a refused
connection is retried with the same key until a definitive answer (2xx or 4xx) arrives. The
audit: nothing oversold, every ``201`` the clients saw is in the database and nothing else,
each registration has exactly one live payment, every outbox drained; ``end_holds`` then
cancels every registration and checks that each hold ended exactly once and its seats came back.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from messaging.catalogue import CONSUMES
from tests.e2e.test_event_flow import auth, organization

SERVICES = ("event", "payment", "notification", "analytics", "user", "media")
CONSUMERS = tuple(CONSUMES)  # the services with a queue (and an inbox they fill)


@dataclass
class Sale:
    ok: dict[str, str] = field(default_factory=dict)  # idempotency key -> registration id
    holder: dict[str, int] = field(default_factory=dict)  # registration id -> client number
    sold_out: int = 0
    retried: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # status (599: no answer) -> count
    answers: int = 0
    first_fault_answer: float | None = None
    recovered_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def sell(base_url: str, tokens: list[dict[str, str]], event_id: str, tt_id: str,
         fault: Callable[[], None], *, clients: int = 12, seconds: float = 8.0,
         fault_at: float = 2.0, give_up_s: float = 300) -> tuple[Sale, float]:
    """``clients`` threads reserve one seat each, again and again, for ``seconds``; ``fault``
    runs ``fault_at`` seconds in. A request still without a definitive answer ``give_up_s``
    after the sale began fails the sale."""
    sale = Sale()
    started = time.monotonic()
    stop = started + seconds
    injected = threading.Event()
    fault_time = [0.0]
    errors: list[BaseException] = []

    def one(http: httpx.Client, n: int, key: str) -> httpx.Response:
        while True:  # until a definitive answer, with the same key
            answer: httpx.Response | None = None
            try:
                answer = http.post(
                    f"/api/v1/events/{event_id}/registrations",
                    headers={**tokens[n % len(tokens)], "Idempotency-Key": key},
                    json={"ticket_type_id": tt_id, "quantity": 1, "payment_mode": "full"})
                status = answer.status_code
            except httpx.HTTPError:
                status = 599
            with sale.lock:
                sale.answers += 1
                if injected.is_set() and status < 500 and sale.recovered_at is None:
                    sale.recovered_at = time.monotonic() - fault_time[0]
                if status >= 500:
                    sale.retried += 1
                    sale.refused[status] += 1
            if answer is not None and status < 500:
                return answer
            if time.monotonic() - started > give_up_s:
                raise AssertionError(f"no definitive answer {give_up_s:.0f} s into the sale")
            time.sleep(0.2)

    def client(n: int) -> None:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            while time.monotonic() < stop:
                answer = one(http, n, key := uuid.uuid4().hex)
                with sale.lock:
                    if answer.status_code == 201:
                        sale.ok[key] = answer.json()["id"]
                        sale.holder[sale.ok[key]] = n
                    elif answer.status_code == 409:
                        sale.sold_out += 1
                    else:
                        raise AssertionError(f"unexpected {answer.status_code}: "
                                             f"{answer.text[:300]}")
                if answer.status_code == 409:
                    time.sleep(0.1)

    def guarded(n: int) -> None:
        try:
            client(n)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(fault_at)
    fault_time[0] = time.monotonic()
    injected.set()
    fault()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sale, time.monotonic() - started


def paid_event(http: httpx.Client, owner: dict[str, Any], quantity: int,
               title: str = "Chaos night") -> tuple[str, str]:
    """A published event with one paid ticket type of ``quantity`` seats: (event, ticket type)."""
    start = datetime.now(UTC) + timedelta(days=20)
    event = http.post("/api/v1/events", headers=auth(owner), json={
        "organization_id": organization(http, owner), "title": title, "venue": "Hall",
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=2)).isoformat(),
        "visibility": "public"}).json()
    tt = http.post(f"/api/v1/events/{event['id']}/ticket-types", headers=auth(owner), json={
        "name": "Floor", "price": {"amount": 990, "currency": "RUB"}, "quantity": quantity})
    assert tt.status_code == 201, tt.text
    assert http.post(f"/api/v1/events/{event['id']}/publish", headers=auth(owner)).is_success
    return event["id"], tt.json()["id"]


def wait_healthy(base_url: str, timeout: float = 120) -> float:
    """Seconds until ``/actuator/health`` answers 200."""
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=5) as http:
        while time.monotonic() - started < timeout:
            try:
                if http.get("/actuator/health").status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise AssertionError("the platform did not become healthy again")


def connect(database_url: str) -> Any:
    return asyncpg.connect(database_url.replace("+asyncpg", ""))


async def audit(database_url: str, event_id: str, seen: set[str], quantity: int,
                settle_s: float = 90) -> dict[str, Any]:
    """Poll until every live registration has its payment and every outbox drained (at most
    ``settle_s``), then what the database holds against the ``201``s in ``seen``."""
    conn = await connect(database_url)
    deadline = time.monotonic() + settle_s
    try:
        while True:
            rows = await conn.fetch(
                "SELECT id, status, quantity FROM event_service.registrations "
                "WHERE event_id = $1", event_id)
            live = [r for r in rows if r["status"] not in ("cancelled", "expired")]
            payments = await conn.fetch(
                "SELECT registration_id::text AS r, count(*) AS n FROM payment_service.payments "
                "WHERE event_id = $1::uuid AND status <> 'failed' GROUP BY 1", event_id)
            unsent = 0
            for service in SERVICES:
                unsent += int(await conn.fetchval(
                    f"SELECT count(*) FROM {service}_service.outbox WHERE sent_at IS NULL"))
            result = {
                "oversold": max(0, sum(r["quantity"] for r in live) - quantity),
                "missing": len(seen - {r["id"] for r in rows}),
                "unseen": len({r["id"] for r in rows} - seen),
                "payments": {r["r"]: r["n"] for r in payments},
                "registrations": len(rows), "unsent": unsent,
            }
            twice = 0
            for service in CONSUMERS:  # each message applied once by each consumer
                twice += int(await conn.fetchval(
                    f"SELECT count(*) - count(DISTINCT message_id) FROM {service}_service.inbox"))
            reserved = int(await conn.fetchval(
                "SELECT coalesce(sum(reservations), 0) FROM analytics_service.rollup_hourly "
                "WHERE event_id = lower($1)", event_id))
            result |= {"inbox_twice": twice,
                       "analytics_reservations": reserved - sum(r["quantity"] for r in rows)}
            settled = (unsent == 0 and len(result["payments"]) == len(live)
                       and result["analytics_reservations"] == 0)
            if settled or time.monotonic() > deadline:
                result["settled"] = settled
                return result
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


def verdict(result: dict[str, Any]) -> str:
    """``ok`` when the audit found nothing wrong, else what it found."""
    doubled = sum(1 for n in result["payments"].values() if n != 1)
    clean = result["settled"] and not (result["oversold"] or result["missing"]
                                       or result["unseen"] or doubled
                                       or result["inbox_twice"])
    return "ok" if clean else f"FAILED {result}"


def end_holds(base_url: str, database_url: str, event_id: str, tt_id: str, sale: Sale,
              tokens: list[dict[str, str]], quantity: int, settle_s: float = 60) -> list[str]:
    """Cancel every registration of the sale through the API (a 5xx retried), then check that
    each hold ended exactly once: its reservation is cancelled with an end time, one
    ``registration.cancelled`` was published for it, and every seat is available again.
    Returns what was wrong (empty when nothing)."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for registration, n in sale.holder.items():
            for _ in range(20):
                answer = http.post(f"/api/v1/registrations/{registration}/cancel",
                                   headers=tokens[n % len(tokens)])
                if answer.status_code < 500:
                    break
                time.sleep(0.5)
            assert answer.status_code == 200, answer.text
        problems = asyncio.run(_ended_once(database_url, event_id, set(sale.holder)))
        deadline = time.monotonic() + settle_s
        while True:  # the list may be cached for a few seconds
            listed = http.get(f"/api/v1/events/{event_id}/ticket-types").json()["items"]
            available = next(t["available"] for t in listed if t["id"] == tt_id)
            if available == quantity or time.monotonic() > deadline:
                break
            time.sleep(1)
    if available != quantity:
        problems.append(f"{available} of {quantity} seats available after every cancel")
    return problems


async def _ended_once(database_url: str, event_id: str, registrations: set[str]) -> list[str]:
    conn = await connect(database_url)
    try:
        holds = await conn.fetch(
            "SELECT registration_id, status, ended_at FROM event_service.reservations "
            "WHERE event_id = $1", event_id)
        cancels = Counter(r["id"] for r in await conn.fetch(
            "SELECT envelope->'data'->>'registration_id' AS id FROM event_service.outbox "
            "WHERE type = 'registration.cancelled' AND aggregate_id = $1", event_id))
    finally:
        await conn.close()
    problems = []
    held = {h["registration_id"] for h in holds}
    if held != registrations:
        problems.append(f"{len(registrations - held)} registrations without a hold, "
                        f"{len(held - registrations)} holds of no registration")
    still = [h for h in holds if h["status"] != "cancelled" or h["ended_at"] is None]
    if still:
        problems.append(f"{len(still)} holds not ended by the cancel: {still[:3]}")
    twice = {r: n for r, n in cancels.items() if n != 1}
    if twice or set(cancels) != registrations:
        problems.append(f"registration.cancelled published twice for {len(twice)}, missing "
                        f"for {len(registrations - set(cancels))}")
    return problems
