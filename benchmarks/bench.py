"""``make bench``: the ticket-sale benchmark, Afisha against the row-lock baseline.

1. A fresh database (on ``AFISHA_BENCH_DATABASE_URL``'s server, or an embedded PostgreSQL this
   script starts) and the platform (``afisha run``, rate limits off) on it.
2. Prepare through the public API: ``--users`` accounts registered and logged in, an
   organization, a hot event, 100 spread-sale events and 100 browse events with paid ticket
   types, published. The same events go into the baseline's tables; the plan (users, tokens,
   ids) is written to ``results/plan.json``.
3. The platform is stopped and the baseline (``benchmarks/baseline``, one uvicorn process on the
   same database) runs every scenario; then the baseline is stopped, the platform started again
   and the same scenarios run against it, with the same users, spawn rate and limits. Nothing of
   one target runs while the other is measured. After each Afisha scenario the work queued
   behind it (outboxes, payments for the new registrations) is left to finish before the next.
4. The database is audited, the side-by-side table printed (``benchmarks/report.py``) and the
   Locust CSVs and a PNG plot left in ``results/``. The last line is
   ``reserve_ratio=<x.xx> p99_ms=<n> oversell=<n> errors_5xx=<n>``.

AMQP and Redis come from ``AFISHA_AMQP_URL`` / ``AFISHA_REDIS_URL`` when set (a queue exchange
and key prefix of the run's own), otherwise the platform's embedded defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from benchmarks import report
from cluster.embedded import EmbeddedPostgres
from cluster.ports import free_port, serve_private_ports, wait_until_healthy
from cluster.settings import SERVICES, schema_of

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PASSWORD = "bench password 123"
ADMIN_EMAIL = "admin@bench.afisha.example.org"
SCENARIOS = ("Session", "FlashSale", "SpreadSale", "Browse")
MAX_CONNECTIONS = 300


@dataclass
class Options:
    users: int
    spawn_rate: float
    max_seconds: int
    browse_seconds: int
    session_seconds: int
    hot_quantity: int
    spread_quantity: int
    price: int
    results: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))


# --- the database -------------------------------------------------------------------------
def plain_url(url: str) -> str:
    """A SQLAlchemy URL as asyncpg / libpq spell it."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return f"{base}?{query}" if query else base


def start_embedded(work: Path, stack: ExitStack) -> str:
    """An embedded PostgreSQL for the run, allowed MAX_CONNECTIONS clients."""
    server = EmbeddedPostgres(work)
    url = server.start()
    asyncio.run(_alter_system(url, f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}"))
    server.stop()
    url = server.start()
    stack.callback(server.stop)
    return url


async def _alter_system(url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def check_connections(server_url: str) -> None:
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        allowed = int(await conn.fetchval("SHOW max_connections"))
    finally:
        await conn.close()
    if allowed < MAX_CONNECTIONS:
        print(f"warning: the server allows {allowed} connections; the spread sale keeps an "
              f"inventory actor (one connection) per event on sale, 100 events plus the "
              f"services' pools: set max_connections to {MAX_CONNECTIONS}", flush=True)


async def create_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


# --- processes ----------------------------------------------------------------------------
class Platform:
    """``afisha run`` in a subprocess, startable again on the same database and data dir."""

    def __init__(self, database_url: str, options: Options, work: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.work = work
        self.log = options.results / "afisha-run.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AFISHA_")}
        self.env.update({
            "AFISHA_DATABASE_URL": database_url, "AFISHA_HTTP_PORT": str(self.port),
            "AFISHA_DASHBOARD_PORT": str(free_port()), "AFISHA_DATA_DIR": str(work / "data"),
            "AFISHA_JWT_SECRET": options.jwt_secret, "AFISHA_ADMIN_EMAILS": ADMIN_EMAIL,
            "AFISHA_ACCESS_TOKEN_TTL_SECONDS": "7200",
            "AFISHA_RATE_LIMIT_AUTH_PER_MINUTE": "0", "AFISHA_RATE_LIMIT_RESERVE_PER_MINUTE": "0",
            "AFISHA_RATE_LIMIT_DEFAULT_PER_MINUTE": "0",
            **serve_private_ports()})
        for name in ("AFISHA_AMQP_URL", "AFISHA_REDIS_URL"):
            if os.environ.get(name):
                self.env[name] = os.environ[name]
        self.env["AFISHA_AMQP_EXCHANGE"] = f"afisha.bench.{options.run_id}"
        self.env["AFISHA_REDIS_KEY_PREFIX"] = f"afisha-bench-{options.run_id}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log.open("ab")
        began = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run"],
                                        env=self.env, cwd=self.work, stdout=log,
                                        stderr=subprocess.STDOUT)
        wait_healthy(self.process, f"{self.base_url}/actuator/health", self.log)
        print(f"  platform healthy in {time.monotonic() - began:.1f} s", flush=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class Baseline:
    """The row-lock baseline: one uvicorn process."""

    def __init__(self, database_url: str, options: Options, work: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = options.results / "baseline.log"
        self.env = {**os.environ, "BASELINE_DATABASE_URL": plain_url(database_url),
                    "BASELINE_JWT_SECRET": options.jwt_secret}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.baseline.app:app", "--port",
             str(self.port), "--log-level", "warning", "--no-access-log"],
            env=self.env, cwd=ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_healthy(self.process, f"{self.base_url}/openapi.json", self.log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)
            self.process = None


def wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    try:
        wait_until_healthy(process, url)
    except RuntimeError as exc:
        raise SystemExit(f"{url}: {exc}:\n{log.read_text()[-3000:]}") from exc


# --- preparation --------------------------------------------------------------------------
def account(http: httpx.Client, email: str) -> dict[str, Any]:
    made = http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD,
                                                     "display_name": email.split("@")[0]})
    if made.status_code not in (201, 409):
        raise SystemExit(f"registering {email}: {made.status_code} {made.text}")
    logged = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    logged.raise_for_status()
    body: dict[str, Any] = logged.json()
    return body


def prepare(base_url: str, options: Options) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=60) as http:
        admin, owner = (account(http, e) for e in (ADMIN_EMAIL,
                                                   f"owner-{options.run_id}@bench.example.org"))
        auth = {"Authorization": f"Bearer {owner['access_token']}"}
        request = http.post("/api/v1/organization-requests", headers=auth,
                            json={"name": f"Bench {options.run_id}", "description": "benchmark"})
        request.raise_for_status()
        http.post(f"/api/v1/organization-requests/{request.json()['id']}/approve",
                  headers={"Authorization": f"Bearer {admin['access_token']}"}
                  ).raise_for_status()
        org = http.post("/api/v1/organizations", headers=auth,
                        json={"request_id": request.json()["id"]})
        org.raise_for_status()

        def event(title: str, quantity: int) -> dict[str, str]:
            start = datetime.now(UTC) + timedelta(days=30)
            made = http.post("/api/v1/events", headers=auth, json={
                "organization_id": org.json()["id"], "title": title, "venue": "Hall",
                "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=3))
                .isoformat(), "visibility": "public", "participants_visibility": "closed"})
            made.raise_for_status()
            event_id = made.json()["id"]
            tt = http.post(f"/api/v1/events/{event_id}/ticket-types", headers=auth, json={
                "name": "Standing", "price": {"amount": options.price, "currency": "RUB"},
                "quantity": quantity})
            tt.raise_for_status()
            http.post(f"/api/v1/events/{event_id}/publish", headers=auth).raise_for_status()
            return {"event_id": event_id, "ticket_type_id": tt.json()["id"]}

        with ThreadPoolExecutor(8) as pool:  # httpx.Client is safe to share across threads
            hot = event("Flash sale", options.hot_quantity)
            spread = list(pool.map(lambda i: event(f"Spread {i}", options.spread_quantity),
                                   range(100)))
            browse = list(pool.map(lambda i: event(f"Browse {i}", 10**6), range(100)))
        owner_id = owner["user"]["id"]

    def user(n: int) -> dict[str, str]:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            body = account(client, f"buyer-{n}-{options.run_id}@bench.example.org")
        return {"id": body["user"]["id"], "token": body["access_token"]}

    with ThreadPoolExecutor(8) as pool:
        users = list(pool.map(user, range(options.users)))
    return {"hot": hot, "spread": spread, "browse": browse, "users": users,
            "organization_id": org.json()["id"], "owner_id": owner_id,
            "quantities": {hot["ticket_type_id"]: options.hot_quantity,
                           **{t["ticket_type_id"]: options.spread_quantity for t in spread},
                           **{t["ticket_type_id"]: 10**6 for t in browse}}}


async def seed_baseline(database_url: str, plan: dict[str, Any], price: int) -> None:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        await conn.execute((HERE / "baseline" / "schema.sql").read_text())
        start = datetime.now(UTC) + timedelta(days=30)
        rows = [plan["hot"], *plan["spread"], *plan["browse"]]
        await conn.executemany(
            "INSERT INTO bench_baseline.events (id, organization_id, title, venue, starts_at, "
            "ends_at, status) VALUES ($1, $2, $3, 'Hall', $4, $5, 'published')",
            [(r["event_id"], plan["organization_id"], f"Event {i}", start,
              start + timedelta(hours=3)) for i, r in enumerate(rows)])
        await conn.executemany(
            "INSERT INTO bench_baseline.ticket_types (id, event_id, name, price, currency, "
            "quantity) VALUES ($1, $2, 'Standing', $3, 'RUB', $4)",
            [(r["ticket_type_id"], r["event_id"], price,
              plan["quantities"][r["ticket_type_id"]]) for r in rows])
    finally:
        await conn.close()


# --- running the scenarios ----------------------------------------------------------------
def component(proc: psutil.Process) -> str:
    """Which part of the system a process is, for the CPU-by-component table."""
    try:
        cmdline = proc.cmdline()
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    first = cmdline[0] if cmdline else name
    if first.startswith("ray::ServeReplica:"):  # "...:afisha:Gateway" or ".Gateway.method()"
        return first.removeprefix("ray::ServeReplica:").split(":", 1)[-1].split(".")[0]
    if first.startswith("ray::InventoryActor"):
        return "inventory actors"
    if first.startswith("ray::") or "ray/core" in first or "raylet" in name or "gcs_server" in name:
        return "ray (controller, proxy, dashboard, gcs)"
    if "locust" in " ".join(cmdline[:3]):
        return "locust (load generator)"
    if "benchmarks.baseline" in " ".join(cmdline):
        return "baseline"
    for label in ("postgres", "haproxy", "beam.smp", "redis-server"):
        if label in name or label in first:
            return {"beam.smp": "rabbitmq", "redis-server": "redis"}.get(label, label)
    return "other"


def cpu_by_process() -> dict[int, tuple[str, float]]:
    found: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter():
        try:
            times = proc.cpu_times()
            found[proc.pid] = (component(proc), times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def cpu_delta(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per component since ``before`` (processes started since count from 0)."""
    totals: dict[str, float] = {}
    for pid, (name, used) in cpu_by_process().items():
        earlier = before.get(pid)
        spent = used - earlier[1] if earlier and earlier[0] == name else used
        totals[name] = totals.get(name, 0.0) + max(spent, 0.0)
    return {k: round(v, 2) for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v > 0.05}


def busy_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def run_locust(scenario: str, target: str, base_url: str, plan_path: Path,
               options: Options, checkout: bool) -> dict[str, Any]:
    seconds = {"Browse": options.browse_seconds,
               "Session": options.session_seconds}.get(scenario, options.max_seconds)
    prefix = options.results / f"{scenario.lower()}_{target}"
    env = {**os.environ, "BENCH_PLAN": str(plan_path), "BENCH_CHECKOUT": "1" if checkout else "",
           "BENCH_SALE_FILE": f"{prefix}_sale.json"}
    command = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
               "--only-summary", "-u", str(options.users), "-r", str(options.spawn_rate),
               "-t", f"{seconds}s", "--stop-timeout", "5", "--host", base_url,
               "--csv", str(prefix), "--csv-full-history", "--exit-code-on-error", "0",
               scenario]
    print(f"  {scenario} against {target} ({options.users} users, up to {seconds} s)",
          flush=True)
    cpu_before, processes, began = busy_cpu_seconds(), cpu_by_process(), time.monotonic()
    process = psutil.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=(options.results / f"{scenario.lower()}_{target}.log").open("w"))
    locust_cpu = 0.0
    while process.poll() is None:
        try:
            times = process.cpu_times()
            locust_cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - began
    server_cpu = max(busy_cpu_seconds() - cpu_before - locust_cpu, 0.0)
    return {"scenario": scenario, "target": target, "elapsed_s": elapsed,
            "server_cpu_s": server_cpu, "locust_cpu_s": locust_cpu,
            "cpu_by_component": cpu_delta(processes),
            **report.read_locust(prefix)}


async def backlog(database_url: str) -> int:
    """Work still queued behind the sales: unsent outbox rows in every schema, plus paid
    registrations the payment service has not yet made a payment for."""
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        total = 0
        for service in SERVICES:
            schema = schema_of(service)
            if await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".outbox'):
                total += await conn.fetchval(
                    f'SELECT count(*) FROM "{schema}".outbox WHERE sent_at IS NULL')
        registrations = await conn.fetchval(
            "SELECT count(*) FROM event_service.registrations WHERE amount > 0")
        payments = await conn.fetchval("SELECT count(*) FROM payment_service.payments")
        return int(total) + max(int(registrations) - int(payments), 0)
    finally:
        await conn.close()


def drain(database_url: str, limit_s: float) -> tuple[float, int]:
    """Wait until the backlog is worked off (or ``limit_s``); (seconds waited, items left)."""
    began = time.monotonic()
    while (left := asyncio.run(backlog(database_url))) and time.monotonic() - began < limit_s:
        time.sleep(1)
    return time.monotonic() - began, left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=64, help="concurrent clients (64)")
    parser.add_argument("--spawn-rate", type=float, default=64, help="users started per second")
    parser.add_argument("--max-seconds", type=int, default=90,
                        help="cap on each sale scenario; a sale normally ends when sold out")
    parser.add_argument("--browse-seconds", type=int, default=30)
    parser.add_argument("--session-seconds", type=int, default=20)
    parser.add_argument("--hot-quantity", type=int, default=15000)
    parser.add_argument("--spread-quantity", type=int, default=150, help="seats per event")
    parser.add_argument("--price", type=int, default=150000, help="minor units (RUB kopecks)")
    parser.add_argument("--drain-seconds", type=float, default=120,
                        help="longest wait for Afisha's backlog after each scenario")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    args = parser.parse_args()
    options = Options(args.users, args.spawn_rate, args.max_seconds, args.browse_seconds,
                      args.session_seconds, args.hot_quantity, args.spread_quantity, args.price,
                      args.results.resolve())
    options.results.mkdir(parents=True, exist_ok=True)
    for log in ("afisha-run.log", "baseline.log"):
        (options.results / log).unlink(missing_ok=True)
    began = time.monotonic()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="afisha-bench-")))
        server_url = os.environ.get("AFISHA_BENCH_DATABASE_URL")
        if not server_url:
            server_url = start_embedded(work, stack)
        asyncio.run(check_connections(server_url))
        database_url = with_database(server_url, f"afisha_bench_{options.run_id}")
        asyncio.run(create_database(server_url, f"afisha_bench_{options.run_id}"))
        print(f"database {database_url}", flush=True)

        platform = Platform(database_url, options, work)
        stack.callback(platform.stop)
        platform.start()
        plan = prepare(platform.base_url, options)
        platform.stop()
        asyncio.run(seed_baseline(database_url, plan, options.price))
        plan_path = options.results / "plan.json"
        plan_path.write_text(json.dumps(plan))
        print(f"prepared {len(plan['users'])} users, {len(plan['quantities'])} events",
              flush=True)

        runs: list[dict[str, Any]] = []
        baseline = Baseline(database_url, options, work)
        stack.callback(baseline.stop)
        baseline.start()
        for scenario in args.scenarios:
            runs.append(run_locust(scenario, "baseline", baseline.base_url, plan_path, options,
                                   checkout=False))
        baseline.stop()

        platform.start()
        for scenario in args.scenarios:
            runs.append(run_locust(scenario, "afisha", platform.base_url, plan_path, options,
                                   checkout=True))
            cpu_before = busy_cpu_seconds()
            waited, left = drain(database_url, args.drain_seconds)
            runs[-1].update(drain_s=waited, drain_left=left,
                            drain_cpu_s=busy_cpu_seconds() - cpu_before)
            print(f"  backlog (outboxes, payments to create) worked off in {waited:.0f} s, "
                  f"{left} left", flush=True)
        audit = asyncio.run(report.audit(plain_url(database_url), plan, runs))
        platform.stop()
    report.write(options.results, runs, audit, time.monotonic() - began)


if __name__ == "__main__":
    main()
