"""Reservations on one hot event, and the memory of many events on the inventory hosts.

1. ``--clients`` concurrent clients reserve one seat each, in a loop, for ``--seconds`` on one
   published event (paid tickets, so every success writes a hold, a registration, a key and an
   outbox row). The clients call the event's inventory host the way the gateway does (one Ray
   hop), first with one call per request, then through the caller-side batcher, so the numbers
   are the host + group commit path without HTTP. Prints reservations/s, p50, p99 and the mean
   number of registrations each database commit wrote.
2. ``--events`` events get one reservation each (free tickets, so no hold keeps their owners
   in memory), ``--parallel`` at a time; the first reservation of each (a cold event: its owner
   is activated from Postgres) is timed; their owners leave the hosts' memory after ``--idle``
   seconds. The RSS of every process of the Ray session is compared with the baseline before
   step 2 (at the peak, and after the owners left); the rows' size in Postgres too.

With ``--http`` it instead starts the whole platform (``afisha run``) and the clients POST
``/api/v1/events/{id}/registrations`` over HTTP (gateway -> actor, one hop).

Runs against a temporary database on ``--database-url`` (created, migrated, dropped) and a
local Ray instance (or platform) it starts and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import psutil
import ray
from pydantic import SecretStr
from sqlalchemy import insert, text

from actors import shards
from actors.client import InventoryClient
from cluster.ports import free_port, serve_private_ports, wait_until_healthy
from cluster.settings import Settings, normalize_database_url
from serve.users.tokens import issue_access_token
from storage import migrate
from storage.engine import create_engine, sessionmaker
from storage.event import events, ticket_types

SECRET = "bench-" + "s" * 40


async def seed(settings: Settings, count: int, quantity: int, price: int) -> list[tuple[str, str]]:
    engine = create_engine(settings, "event")
    start = datetime.now(UTC) + timedelta(days=30)
    pairs = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(count)]
    async with sessionmaker(engine).begin() as session:
        await session.execute(insert(events), [
            {"id": e, "organization_id": "bench", "title": "Benchmark", "starts_at": start,
             "ends_at": start + timedelta(hours=2), "visibility": "public",
             "participants_visibility": "open", "status": "published", "created_by": "bench"}
            for e, _ in pairs])
        await session.execute(insert(ticket_types), [
            {"id": t, "event_id": e, "name": "GA", "price": price, "currency": "RUB",
             "quantity": quantity} for e, t in pairs])
    await engine.dispose()
    return pairs


async def hot_event(settings: Settings, clients: int, seconds: float,
                    batched: bool) -> dict[str, float]:
    [(event_id, tt)] = await seed(settings, 1, 10**8, 1000)
    inventory = InventoryClient(settings.to_runtime())
    await inventory.call(event_id, "ready")
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(n: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            began = time.perf_counter()
            # Like the gateway: every request carries an Idempotency-Key.
            request = (f"c{n}-{i}", tt, 1, "full", f"{event_id}-{n}-{i}", "bench")
            if batched:
                await inventory.reserve(event_id, *request)
            else:
                await inventory.call(event_id, "reserve", *request)
            latencies.append(time.perf_counter() - began)
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - began
    counts = await inventory.call(event_id, "ready")
    assert counts["ticket_types"][tt]["held"] == len(latencies)
    engine = create_engine(settings, "event")
    async with engine.connect() as conn:
        transactions = await conn.scalar(text(
            "SELECT count(DISTINCT xmin::text) FROM registrations WHERE event_id = :e"),
            {"e": event_id})
    await engine.dispose()
    ordered = sorted(latencies)
    return {"reservations": len(latencies), "per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
            "rows_per_commit": len(latencies) / max(int(transactions or 0), 1)}


def session_processes() -> list[tuple[str, int]]:
    """(command, RSS) of the processes of this Ray session: those naming its session
    directory (GCS, raylet, agents) and all their descendants (workers, actors). Other Ray
    instances on the machine are not counted; this driver is not either."""
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    roots = [p for p in psutil.process_iter(["cmdline"])
             if session_dir in " ".join(p.info["cmdline"] or [])]
    found: dict[int, psutil.Process] = {}
    for root in roots:
        for proc in [root, *root.children(recursive=True)]:
            found.setdefault(proc.pid, proc)
    result = []
    for proc in found.values():
        try:
            result.append((" ".join(proc.cmdline())[:60], proc.memory_info().rss))
        except psutil.NoSuchProcess:
            continue
    return result


def session_rss() -> tuple[int, int]:
    found = session_processes()
    return sum(rss for _, rss in found), len(found)


async def active_owners(settings: Settings) -> int:
    """Event owners in the memory of the shared hosts."""
    total = 0
    for index in range(settings.inventory_hosts):
        namespace = shards.namespace_of(settings.database_url_for("event"))
        host = ray.get_actor(shards.host_name(index), namespace=namespace)
        total += len((await host.stats.remote())["events"])
    return total


async def owners_left(settings: Settings, at_most: int, limit_s: float = 600) -> None:
    for _ in range(int(limit_s / 0.5)):
        if await active_owners(settings) <= at_most:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("idle event owners did not leave memory")


async def many_events(settings: Settings, count: int, parallel: int,
                      verbose: bool, settle: float) -> dict[str, float]:
    inventory = InventoryClient(settings.to_runtime())
    await asyncio.to_thread(inventory.start_hosts)
    resident = await active_owners(settings)  # the hot event's owner keeps its holds
    await asyncio.sleep(settle)
    base_rss, base_n = session_rss()
    pairs = await seed(settings, count, 100, 0)
    gate = asyncio.Semaphore(parallel)
    peak = [0]
    cold: list[float] = []

    async def one(event_id: str, tt: str) -> None:
        async with gate:
            began = time.perf_counter()
            await inventory.reserve(event_id, "someone", tt, 1, "full", f"k-{event_id}", "-")
            cold.append(time.perf_counter() - began)

    async def sample_peak() -> None:  # apart from the requests: a sample takes ~0.1 s
        while True:
            peak[0] = max(peak[0], (await asyncio.to_thread(session_rss))[0])
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample_peak())
    began = time.perf_counter()
    await asyncio.gather(*(one(e, t) for e, t in pairs))
    reserved_s = time.perf_counter() - began
    sampler.cancel()
    peak[0] = max(peak[0], session_rss()[0])
    ordered = sorted(cold)
    await owners_left(settings, resident)
    await asyncio.sleep(settle)
    after_rss, after_n = session_rss()
    if verbose:
        for name, rss in session_processes():
            print(f"  {rss / 2**20:7.1f} MiB  {name}")
    engine = create_engine(settings, "event")
    async with engine.connect() as conn:
        db_bytes = await conn.scalar(text(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'event_service' AND c.relkind = 'r'"))
    await engine.dispose()
    return {"events": count, "seconds_to_reserve_all": reserved_s,
            "ray_rss_mib_before": base_rss / 2**20, "ray_rss_mib_after": after_rss / 2**20,
            "ray_processes_before": base_n, "ray_processes_after": after_n,
            "ray_rss_mib_peak": peak[0] / 2**20,
            "cold_p50_ms": 1000 * statistics.median(ordered),
            "cold_p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
            "event_schema_mib": int(db_bytes or 0) / 2**20}


def start_platform(database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFISHA_")}
    env.update({"AFISHA_DATABASE_URL": database_url, "AFISHA_HTTP_PORT": str(port),
                "AFISHA_DASHBOARD_PORT": str(free_port()), "AFISHA_JWT_SECRET": SECRET,
                "AFISHA_PAYMENT_PROVIDER": "sandbox",
                "AFISHA_DATA_DIR": tempfile.mkdtemp(prefix="afisha-bench-"),
                "AFISHA_LOG_LEVEL": "WARNING", "AFISHA_RATE_LIMIT_RESERVE_PER_MINUTE": "0",
                "AFISHA_RATE_LIMIT_DEFAULT_PER_MINUTE": "0", **serve_private_ports()})
    process = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, f"{base_url}/actuator/health", limit_s=300)
    except RuntimeError as exc:
        process.send_signal(signal.SIGINT)
        raise SystemExit(f"the platform did not become healthy: {exc}") from exc
    return process, base_url


async def http_hot_event(settings: Settings, base_url: str, clients: int,
                         seconds: float) -> dict[str, float]:
    [(event_id, tt)] = await seed(settings, 1, 10**8, 1000)
    url = f"/api/v1/events/{event_id}/registrations"
    latencies: list[float] = []
    failures: list[int] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
        await http.post(url, json={"ticket_type_id": tt}, headers={  # the event becomes known
            "Authorization": f"Bearer {issue_access_token(settings, 'warm-up')}"})
        stop = time.perf_counter() + seconds

        async def client(n: int) -> None:
            headers = {"Authorization": f"Bearer {issue_access_token(settings, f'fan-{n}')}"}
            while time.perf_counter() < stop:
                began = time.perf_counter()
                response = await http.post(url, json={"ticket_type_id": tt}, headers=headers)
                if response.status_code == 201:
                    latencies.append(time.perf_counter() - began)
                else:
                    failures.append(response.status_code)

        began = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {"reservations": len(latencies), "failures": len(failures),
            "per_s": len(latencies) / elapsed, "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))]}


async def admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run_http(settings: Settings, url: str, args: argparse.Namespace) -> None:
    process, base_url = start_platform(url)
    try:
        signed = settings.model_copy(update={"jwt_secret": SecretStr(SECRET)})
        hot = asyncio.run(http_hot_event(signed, base_url, args.clients, args.seconds))
        print(f"hot event over HTTP, {args.clients} clients, {args.seconds:.0f} s: "
              f"{hot['reservations']:.0f} reservations ({hot['failures']:.0f} failed), "
              f"{hot['per_s']:.0f}/s, p50 {hot['p50_ms']:.1f} ms, p99 {hot['p99_ms']:.1f} ms",
              flush=True)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=16, help="events activated at once")
    parser.add_argument("--idle", type=float, default=2, help="owner idle seconds")
    parser.add_argument("--window-ms", type=float, default=2, help="group-commit window")
    parser.add_argument("--settle", type=float, default=15, help="seconds before measuring")
    parser.add_argument("--http", action="store_true", help="through the platform over HTTP")
    parser.add_argument("--verbose", action="store_true", help="list the processes measured")
    args = parser.parse_args()
    name = f"afisha_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(args.database_url, f'CREATE DATABASE "{name}"'))
    url = args.database_url.rsplit("/", 1)[0] + f"/{name}"
    settings = Settings.model_validate({
        "database_url": normalize_database_url(url), "inventory_idle_seconds": args.idle,
        "inventory_batch_window_ms": args.window_ms, "log_level": "WARNING"})
    try:
        migrate.upgrade(settings)
        if args.http:
            run_http(settings, url, args)
            return
        ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="afisha-bench",
                 logging_level="WARNING")
        for batched in (False, True):
            hot = asyncio.run(hot_event(settings, args.clients, args.seconds, batched))
            how = "batched host calls" if batched else "one host call per request"
            print(f"hot event, {args.clients} clients, {args.seconds:.0f} s, {how}: "
                  f"{hot['reservations']:.0f} reservations, {hot['per_s']:.0f}/s, "
                  f"p50 {hot['p50_ms']:.1f} ms, p99 {hot['p99_ms']:.1f} ms, "
                  f"{hot['rows_per_commit']:.1f} registrations per commit", flush=True)
        if args.events:
            mem: dict[str, Any] = asyncio.run(many_events(settings, args.events, args.parallel,
                                                       args.verbose, args.settle))
            print("many events: " + ", ".join(
                f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in mem.items()))
    finally:
        ray.shutdown()
        asyncio.run(admin(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
