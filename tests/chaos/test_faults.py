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
import uuid
from collections.abc import Callable

import asyncpg
import psutil

from tests.conftest import REDIS_URL
from tests.e2e.conftest import RunningPlatform
from tests.e2e.test_event_flow import account, auth
from tests.sale import CONSUMERS, audit, paid_event, sell, verdict, wait_healthy

QUANTITY = 300  # seats per fault's event: about what sells in a sale of SALE_SECONDS
CLIENTS = 12


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
    "consumer killed between effect and ack": kill_consumers,
}


def consumer_duplicates(platform: RunningPlatform, service: str) -> int:
    """Redeliveries the service's consumer (its current replica) found in its inbox."""
    with platform.client() as http:
        text = http.get("/actuator/prometheus").text
    wanted = f'afisha_consumer_messages_total{{service="{service}",outcome="duplicates"}}'
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith(wanted))


# --- after the faults ---------------------------------------------------------------------

async def dead_letters(platform: RunningPlatform, amqp_url: str) -> int:
    import aio_pika

    from messaging import topology

    names = topology.Names(platform.exchange)
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        total = 0
        for service in CONSUMERS:
            queue = await channel.declare_queue(names.dlq(service), passive=True)
            total += queue.declaration_result.message_count or 0
        return total


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
            event_id, tt_id = paid_event(http, owner, QUANTITY)
        sale, _ = sell(platform.base_url, tokens, event_id, tt_id,
                       lambda i=inject: i(platform), clients=CLIENTS)
        healthy = wait_healthy(platform.base_url)
        found = verdict(asyncio.run(audit(platform.database_url, event_id,
                                          set(sale.ok.values()), QUANTITY)))
        if found != "ok":
            failures.append(f"{name}: {found}")
        elif name.startswith("consumer killed"):
            skipped = sum(consumer_duplicates(platform, s) for s in ("analytics", "payment"))
            found = f"ok (redeliveries the new replicas' inboxes skipped: {skipped})"
        recovered = f"{sale.recovered_at:.2f}" if sale.recovered_at is not None else "-"
        table.append(f"| {name} | {sale.answers} | {len(sale.ok)} | {sale.sold_out} | "
                     f"{sale.retried} | {recovered} | {healthy:.1f} | {found} |")
    dead = asyncio.run(dead_letters(platform, amqp_url))
    print("\n" + "\n".join(table) + f"\n\ndead letters after all faults: {dead}")
    for line in platform.log.read_text(errors="replace").splitlines():
        if "dead-lettered" in line:  # each one explained (its reason is on the line)
            print(line)
    assert not failures, failures
    assert dead == 0
