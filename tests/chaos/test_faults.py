"""Faults while tickets sell: each is injected once during a sale on the running platform, then
the platform settles and the database is audited. Nothing may be oversold, every ``201`` the
clients saw must be in the database and nothing else, each registration must have exactly one
live payment, each domain event must be applied once by each consumer (no message id twice in
an inbox; the analytics rollups count exactly the registrations' seats), every outbox must
drain and no message may be dead-lettered (any that is, is printed with its reason).

The clients do what a browser with an ``Idempotency-Key`` does: a 5xx, a timeout or a refused
connection is retried with the same key until a definitive answer (2xx or 4xx) arrives. A table
of what each fault cost is printed (``pytest -s`` shows it)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import psutil

from tests.conftest import REDIS_URL
from tests.e2e.conftest import RunningPlatform
from tests.e2e.test_event_flow import account, auth, organization

QUANTITY = 300  # seats per fault's event: about what sells in a sale of SALE_SECONDS
CLIENTS = 12
SALE_SECONDS = 8.0
FAULT_AT = 2.0
SERVICES = ("event", "payment", "notification", "analytics", "user", "media")


@dataclass
class Sale:
    ok: dict[str, str] = field(default_factory=dict)  # idempotency key -> registration id
    sold_out: int = 0
    retried: int = 0
    answers: int = 0
    first_fault_answer: float | None = None
    recovered_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def sell(platform: RunningPlatform, tokens: list[dict[str, str]], event_id: str, tt_id: str,
         fault: Callable[[], None]) -> tuple[Sale, float]:
    sale = Sale()
    started = time.monotonic()
    stop = started + SALE_SECONDS
    injected = threading.Event()
    fault_time = [0.0]

    def client(n: int) -> None:
        with httpx.Client(base_url=platform.base_url, timeout=10) as http:
            while time.monotonic() < stop:
                key = uuid.uuid4().hex
                while True:  # until a definitive answer, with the same key
                    try:
                        answer = http.post(
                            f"/api/v1/events/{event_id}/registrations",
                            headers={**tokens[n % len(tokens)], "Idempotency-Key": key},
                            json={"ticket_type_id": tt_id, "quantity": 1,
                                  "payment_mode": "full"})
                        status = answer.status_code
                    except httpx.HTTPError:
                        status = 599
                    with sale.lock:
                        sale.answers += 1
                        if injected.is_set() and status < 500 and sale.recovered_at is None:
                            sale.recovered_at = time.monotonic() - fault_time[0]
                    if status < 500:
                        break
                    with sale.lock:
                        sale.retried += 1
                    time.sleep(0.2)
                with sale.lock:
                    if status == 201:
                        sale.ok[key] = answer.json()["id"]
                    elif status == 409:
                        sale.sold_out += 1
                    else:
                        raise AssertionError(f"unexpected {status}: {answer.text[:300]}")
                if status == 409:
                    time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(FAULT_AT)
    fault_time[0] = time.monotonic()
    injected.set()
    fault()
    for t in threads:
        t.join()
    return sale, time.monotonic() - started


# --- the faults -------------------------------------------------------------------------

def descendants(platform: RunningPlatform, marker: str) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(platform.pid).children(recursive=True):
        try:
            if marker in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            continue
    return found


def kill(platform: RunningPlatform, marker: str) -> None:
    victims = descendants(platform, marker)
    assert victims, f"no process of the platform runs {marker}"
    for victim in victims:
        victim.send_signal(signal.SIGKILL)


def close_broker_connections(platform: RunningPlatform) -> None:
    listed = subprocess.run(["rabbitmqctl", "list_connections", "pid", "client_properties",
                             "--no-table-headers", "--quiet"], capture_output=True, text=True,
                            check=True, timeout=30)
    mine = [line.split("\t", 1)[0] for line in listed.stdout.splitlines()
            if platform.exchange in line]
    assert mine, "no broker connection of the platform was found"
    for pid in mine:
        subprocess.run(["rabbitmqctl", "close_connection", pid, "chaos test"], check=True,
                       capture_output=True, timeout=30)


def terminate_database_sessions(platform: RunningPlatform) -> None:
    async def terminate() -> int:
        database = platform.database_url.rsplit("/", 1)[1]
        conn = await asyncpg.connect(platform.database_url.replace("+asyncpg", ""))
        try:
            return int(await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()", database))
        finally:
            await conn.close()

    assert asyncio.run(terminate()) > 0


def kill_redis_clients(platform: RunningPlatform, redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        mine = [c["id"] for c in client.client_list()
                if c.get("name") == f"afisha:{platform.redis_prefix}"]
        assert mine, "no Redis client of the platform was found"
        for client_id in mine:
            client.client_kill_filter(_id=client_id)
    finally:
        client.close()


def kill_consumers(platform: RunningPlatform) -> None:
    kill(platform, "ServeReplica:afisha:AnalyticsService")
    kill(platform, "ServeReplica:afisha:PaymentService")


FAULTS: dict[str, Callable[[RunningPlatform], None]] = {
    "inventory host killed": lambda p: kill(p, "InventoryHost"),
    "payment replica killed": lambda p: kill(p, "ServeReplica:afisha:PaymentService"),
    "broker connections closed": close_broker_connections,
    "database sessions terminated": terminate_database_sessions,
    "Redis connections killed": lambda p: kill_redis_clients(p, REDIS_URL),
    # kill -9 while the analytics and payment consumers apply the sale's burst: batches whose
    # commit went through but whose acks never left come back from the broker, and the inbox
    # skips them.
    "consumer killed between effect and ack": lambda p: kill_consumers(p),
}
CONSUMERS = ("event", "payment", "notification", "analytics")


def consumer_duplicates(platform: RunningPlatform, service: str) -> int:
    """Redeliveries the service's consumer (its current replica) found in its inbox."""
    with platform.client() as http:
        text = http.get("/actuator/prometheus").text
    wanted = f'afisha_consumer_messages_total{{service="{service}",outcome="duplicates"}}'
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith(wanted))


# --- the audit ----------------------------------------------------------------------------

async def audit(platform: RunningPlatform, event_id: str, tt_id: str, seen: set[str],
                settle_s: float = 90) -> dict[str, Any]:
    url = platform.database_url.replace("+asyncpg", "")
    conn = await asyncpg.connect(url)
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
                "oversold": max(0, sum(r["quantity"] for r in live) - QUANTITY),
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


async def dead_letters(platform: RunningPlatform, amqp_url: str) -> int:
    import aio_pika

    from messaging import topology

    names = topology.Names(platform.exchange)
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        total = 0
        for service in ("event", "payment", "notification", "analytics"):
            queue = await channel.declare_queue(names.dlq(service), passive=True)
            total += queue.declaration_result.message_count or 0
        return total


def paid_event(http: httpx.Client, owner: dict[str, Any]) -> tuple[str, str]:
    start = datetime.now(UTC) + timedelta(days=20)
    event = http.post("/api/v1/events", headers=auth(owner), json={
        "organization_id": organization(http, owner), "title": "Chaos night", "venue": "Hall",
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=2)).isoformat(),
        "visibility": "public"}).json()
    tt = http.post(f"/api/v1/events/{event['id']}/ticket-types", headers=auth(owner), json={
        "name": "Floor", "price": {"amount": 990, "currency": "RUB"}, "quantity": QUANTITY})
    assert tt.status_code == 201, tt.text
    assert http.post(f"/api/v1/events/{event['id']}/publish", headers=auth(owner)).is_success
    return event["id"], tt.json()["id"]


def wait_healthy(platform: RunningPlatform, timeout: float = 120) -> float:
    started = time.monotonic()
    with httpx.Client(base_url=platform.base_url, timeout=5) as http:
        while time.monotonic() - started < timeout:
            try:
                if http.get("/actuator/health").status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise AssertionError("the platform did not become healthy again")


def test_faults_during_a_sale_lose_and_double_nothing(chaos_platform: RunningPlatform,
                                                      amqp_url: str) -> None:
    platform = chaos_platform
    with platform.client() as http:
        owner = account(http, f"chaos-org-{uuid.uuid4().hex[:6]}@example.org")
        tokens = [auth(account(http, f"chaos-{n}-{uuid.uuid4().hex[:6]}@example.org"))
                  for n in range(CLIENTS)]
    table = ["| fault | requests during it | 201 | refused 4xx (sold out) | refused 5xx/timeouts "
             "(retried) | recovered after, s | healthy again after, s | audit |",
             "|---|---|---|---|---|---|---|---|"]
    failures = []
    for name, inject in FAULTS.items():
        with platform.client() as http:
            event_id, tt_id = paid_event(http, owner)
        sale, _ = sell(platform, tokens, event_id, tt_id, lambda i=inject: i(platform))
        healthy = wait_healthy(platform)
        result = asyncio.run(audit(platform, event_id, tt_id, set(sale.ok.values())))
        doubled = sum(1 for n in result["payments"].values() if n != 1)
        verdict = ("ok" if result["settled"] and not (result["oversold"] or result["missing"]
                                                       or result["unseen"] or doubled
                                                       or result["inbox_twice"])
                   else f"FAILED {result}")
        if verdict != "ok":
            failures.append(f"{name}: {verdict}")
        elif name.startswith("consumer killed"):
            skipped = sum(consumer_duplicates(platform, s) for s in ("analytics", "payment"))
            verdict = f"ok (redeliveries the new replicas' inboxes skipped: {skipped})"
        recovered = f"{sale.recovered_at:.2f}" if sale.recovered_at is not None else "-"
        table.append(f"| {name} | {sale.answers} | {len(sale.ok)} | {sale.sold_out} | "
                     f"{sale.retried} | {recovered} | {healthy:.1f} | {verdict} |")
    dead = asyncio.run(dead_letters(platform, amqp_url))
    for line in platform.log.read_text(errors="replace").splitlines():
        if "dead-lettered" in line:  # each one explained (its reason is on the line)
            print(line)
    print("\n" + "\n".join(table) + f"\n\ndead letters after all faults: {dead}")
    assert not failures, failures
    assert dead == 0
