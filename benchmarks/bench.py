"""``make bench``: the ticket-sale benchmark, Afisha against the row-lock baseline.

1. A fresh database (on ``AFISHA_BENCH_DATABASE_URL``'s server, or an embedded PostgreSQL this
   script starts) and the platform (``afisha run``, rate limits off) on it.
2. Prepare through the public API: ``--users`` accounts registered and logged in, an
   organization, the events of every scenario with paid ticket types, published. The same
   events go into the baseline's tables; the plan (users, tokens, ids) is written to
   ``results/plan.json``.
3. The capacity pass (``benchmarks/capacity.py``): per scenario (flash sale, spread sale,
   browse) a fresh platform, then wrk rounds alternating baseline and Afisha, each followed by
   the wait until it is settled; the flash sale's open-loop latency at the baseline's maximum
   rate, the first reservation on never-touched events, and many events on sale at once
   (the platform's RSS over idle).
4. The Locust pass (the user-facing load test): per scenario the baseline with the platform
   stopped, then a fresh platform; the work queued behind Afisha is left to finish.
5. The database is audited, the tables printed (``benchmarks/report.py``), the Locust CSVs and
   a PNG plot left in ``results/``. The last line is
   ``sale_ratio=… settled_ratio=… spread_ratio=… browse_ratio=… p99_ms=… cold_p99_ms=…
   oversell=… errors_5xx=…``.

AMQP and Redis come from ``AFISHA_AMQP_URL`` / ``AFISHA_REDIS_URL`` when set (a queue exchange
and key prefix of the run's own), otherwise the platform's embedded defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
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

from benchmarks import capacity, processes, report
from cluster.embedded import EmbeddedPostgres
from cluster.ports import free_port, serve_private_ports, wait_until_healthy
from cluster.settings import SERVICES, schema_of

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PASSWORD = "bench password 123"
ADMIN_EMAIL = "admin@bench.afisha.example.org"
SCENARIOS = ("Session", "FlashSale", "SpreadSale", "Browse")
CAPACITY = ("FlashSale", "SpreadSale", "Browse")
MAX_CONNECTIONS = 300
UNLIMITED = 10**6  # seats of the events the capacity pass sells without selling them out


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
    spread_events: int = 100
    browse_events: int = 100
    cold_events: int = 100
    many_events: int = 1000
    settings: dict[str, str] = field(default_factory=dict)  # more AFISHA_* for the platform
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


# The embedded server's settings for a run: clients enough, and a log that shows what can stall
# a sale (checkpoints, autovacuum, lock waits, statements over 200 ms), kept in results/.
EMBEDDED_SETTINGS = {"max_connections": str(MAX_CONNECTIONS), "log_checkpoints": "on",
                     "log_autovacuum_min_duration": "0", "log_lock_waits": "on",
                     "log_min_duration_statement": "200", "log_line_prefix": "'%m [%p] %a: '"}


def start_embedded(work: Path, stack: ExitStack, results: Path) -> str:
    """An embedded PostgreSQL for the run, allowed MAX_CONNECTIONS clients; its log is copied
    to ``results/postgres.log`` when the run ends."""
    server = EmbeddedPostgres(work)
    url = server.start()
    asyncio.run(_alter_system(url, [f"ALTER SYSTEM SET {name} = {value}"
                                    for name, value in EMBEDDED_SETTINGS.items()]))
    server.stop()
    url = server.start()
    stack.callback(server.stop)
    stack.callback(keep_log, server.log_file, results / "postgres.log")
    return url


def keep_log(log: Path, kept: Path) -> None:
    if log.exists():
        shutil.copyfile(log, kept)


async def _alter_system(url: str, statements: list[str]) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        for sql in statements:
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
        print(f"warning: the server allows {allowed} connections; the services' pools, the "
              f"inventory hosts' connections and the baseline's pool need more: set "
              f"max_connections to {MAX_CONNECTIONS}", flush=True)


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
            "AFISHA_PAYMENT_PROVIDER": "sandbox",
            "AFISHA_ACCESS_TOKEN_TTL_SECONDS": "7200",
            "AFISHA_RATE_LIMIT_AUTH_PER_MINUTE": "0", "AFISHA_RATE_LIMIT_RESERVE_PER_MINUTE": "0",
            "AFISHA_RATE_LIMIT_DEFAULT_PER_MINUTE": "0",
            **serve_private_ports()})
        for name in ("AFISHA_AMQP_URL", "AFISHA_REDIS_URL"):
            if os.environ.get(name):
                self.env[name] = os.environ[name]
        self.env.update(options.settings)
        self.env["AFISHA_AMQP_EXCHANGE"] = f"afisha.bench.{options.run_id}"
        self.env["AFISHA_REDIS_KEY_PREFIX"] = f"afisha-bench-{options.run_id}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, attempts: int = 2) -> None:
        """Start ``afisha run`` and wait until healthy; on a loaded machine Ray's own startup
        can time out, so a failed start is tried again once."""
        for attempt in range(1, attempts + 1):
            log = self.log.open("ab")
            began = time.monotonic()
            self.process = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run"],
                                            env=self.env, cwd=self.work, stdout=log,
                                            stderr=subprocess.STDOUT)
            try:
                wait_healthy(self.process, f"{self.base_url}/actuator/health", self.log)
            except SystemExit as exc:
                self.stop()
                if attempt == attempts:
                    raise
                print(f"  the platform did not start ({str(exc).splitlines()[0]}), "
                      "trying again", flush=True)
                continue
            print(f"  platform healthy in {time.monotonic() - began:.1f} s", flush=True)
            return

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

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

        def events(title: str, count: int, quantity: int) -> list[dict[str, str]]:
            return list(pool.map(lambda i: event(f"{title} {i}", quantity), range(count)))

        with ThreadPoolExecutor(8) as pool:  # httpx.Client is safe to share across threads
            hot = event("Flash sale", options.hot_quantity)
            capacity_hot = event("Flash sale (capacity pass)", UNLIMITED)
            spread = events("Spread", options.spread_events, options.spread_quantity)
            browse = events("Browse", options.browse_events, UNLIMITED)
            cold = events("Cold", options.cold_events, 10)
            many = events("Many", options.many_events, 10)
        owner_id = owner["user"]["id"]

    def user(n: int) -> dict[str, str]:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            body = account(client, f"buyer-{n}-{options.run_id}@bench.example.org")
        return {"id": body["user"]["id"], "token": body["access_token"]}

    with ThreadPoolExecutor(8) as pool:
        users = list(pool.map(user, range(options.users)))
    return {"hot": hot, "capacity_hot": capacity_hot, "spread": spread, "browse": browse,
            "cold": cold, "many": many, "users": users,
            "organization_id": org.json()["id"], "owner_id": owner_id,
            "owner_token": owner["access_token"],
            "quantities": {hot["ticket_type_id"]: options.hot_quantity,
                           capacity_hot["ticket_type_id"]: UNLIMITED,
                           **{t["ticket_type_id"]: options.spread_quantity for t in spread},
                           **{t["ticket_type_id"]: UNLIMITED for t in browse},
                           **{t["ticket_type_id"]: 10 for t in cold + many}}}


async def seed_baseline(database_url: str, plan: dict[str, Any], price: int) -> None:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        await conn.execute((HERE / "baseline" / "schema.sql").read_text())
        start = datetime.now(UTC) + timedelta(days=30)
        rows = [plan["hot"], plan["capacity_hot"], *plan["spread"], *plan["browse"],
                *plan["cold"], *plan["many"]]
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
    snapshot, began = processes.cpu_snapshot(), time.monotonic()
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
    by_component = processes.cpu_delta(snapshot)
    return {"scenario": scenario, "target": target, "elapsed_s": elapsed,
            "server_cpu_s": server_cpu(by_component), "locust_cpu_s": locust_cpu,
            "cpu_by_component": by_component, **report.read_locust(prefix)}


def server_cpu(by_component: dict[str, float]) -> float:
    """CPU seconds of the system under test: every component but the load generators."""
    return sum(v for k, v in by_component.items()
               if not k.startswith(("locust", "wrk", "bench driver")))


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



def declare_hot(base_url: str, token: str, event_ids: list[str]) -> list[str]:
    """Declare events hot as their organizer (``POST /api/v1/events/{id}/hot``); what each
    answer was, for the log. Code without the route answers 404: the run goes on."""
    said = []
    with httpx.Client(base_url=base_url, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        for event_id in event_ids:
            answer = http.post(f"/api/v1/events/{event_id}/hot", json={"hot": True})
            note = f"POST /api/v1/events/{event_id}/hot: {answer.status_code}"
            if answer.status_code == 404:
                note += " (no such route or event on this code: going on without)"
            elif answer.status_code >= 400:
                note += f" {answer.text[:300]}"
            said.append(note)
            print(f"  {note}", flush=True)
    return said


def capacity_pass(args: argparse.Namespace, options: Options, plan: dict[str, Any],
                  platform: Platform, baseline: Baseline, database_url: str) -> dict[str, Any]:
    """wrk rounds per scenario on a fresh platform; open-loop latency; cold events."""
    tokens = [u["token"] for u in plan["users"]]
    url = plain_url(database_url)
    common = {"tokens": tokens, "seconds": args.round_seconds, "connections": options.users,
              "threads": args.wrk_threads, "database_url": url, "results": options.results,
              "run_id": options.run_id, "settle_limit_s": args.settle_seconds}
    targets = {"FlashSale": ("reserve", [plan["capacity_hot"]], []),
               "SpreadSale": ("reserve", plan["spread"], []),
               "Browse": ("browse", plan["browse"][:5], [b["event_id"] for b in plan["browse"]])}
    out: dict[str, Any] = {"rounds": [], "hot": [], "open_loop": {}, "cold": {}}
    for scenario in args.capacity:
        print(f"capacity: {scenario}, {args.rounds} rounds each of {args.round_seconds:.0f} s, "
              f"{options.users} connections", flush=True)
        if platform.process is None:  # the first runs on the platform that prepared the plan
            platform.start()
        afisha = capacity.Side("afisha", platform.base_url, platform.pid)
        base = capacity.Side("baseline", baseline.base_url)
        if scenario == "FlashSale":
            out["hot"] = declare_hot(platform.base_url, plan["owner_token"],
                                     [plan["capacity_hot"]["event_id"]])
        mode, chosen, browse = targets[scenario]
        out["rounds"] += capacity.alternate(base, afisha, args.rounds, scenario=scenario,
                                            mode=mode, targets=chosen, browse=browse, **common)
        if scenario == "FlashSale":
            rate = args.open_rate or capacity.median_of(out["rounds"], "FlashSale",
                                                        "baseline", "sale_rate")
            out["open_loop"] = open_loop_flash(args, plan, tokens, base, afisha, rate, url)
        if scenario == "SpreadSale" and plan["cold"]:
            out["cold"] = cold_events(args, plan, tokens, base, afisha)
        platform.stop()
    return out


def open_loop_flash(args: argparse.Namespace, plan: dict[str, Any], tokens: list[str],
                    base: capacity.Side, afisha: capacity.Side, rate: float,
                    database_url: str) -> dict[str, Any]:
    """Both sides at the same arrival rate, the baseline's median maximum, on the hot event."""
    count = max(int(rate * args.open_seconds), 1)
    out: dict[str, Any] = {}
    for side in (base, afisha):
        calls = [capacity.reservation(plan["capacity_hot"], tokens[i % len(tokens)],
                                      f"open-{side.name}-{i}-{uuid.uuid4().hex}")
                 for i in range(count)]
        print(f"  open loop: {side.name} at {rate:.0f}/s for {args.open_seconds:.0f} s",
              flush=True)
        result = capacity.open_loop(side.base_url, calls, rate)
        capacity.wait_settled(database_url, side.name, [plan["capacity_hot"]["event_id"]],
                              time.monotonic(), args.settle_seconds)
        capacity.wait_quiet(side.pid, 30)
        print(f"    p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
              f"{result['reserved']} reserved, {result['failed']} failed, "
              f"5xx {result['errors_5xx']}", flush=True)
        print(f"    {tail(result)}", flush=True)
        out[side.name] = result
    return out


def tail(result: dict[str, Any]) -> str:
    """When an open loop started and its slowest answers, ``<ms> ms at <s> s`` (the second
    each was due)."""
    slowest = ", ".join(f"{ms:.0f} ms at {due:.2f} s" for due, ms, _ in result["slowest"])
    return f"started {result['started_at']}; slowest: {slowest}"


def cold_events(args: argparse.Namespace, plan: dict[str, Any], tokens: list[str],
                base: capacity.Side, afisha: capacity.Side) -> dict[str, Any]:
    """The first reservation on each never-touched event, at a fixed arrival rate, on each
    side (each has its own tables: the same events are cold on both)."""
    out: dict[str, Any] = {}
    for side in (base, afisha):
        calls = [capacity.reservation(e, tokens[i % len(tokens)], f"cold-{uuid.uuid4().hex}")
                 for i, e in enumerate(plan["cold"])]
        result = capacity.open_loop(side.base_url, calls, args.cold_rate)
        print(f"  cold events: {side.name}, {len(calls)} at {args.cold_rate:.0f}/s: p50 "
              f"{result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
              f"{result['failed']} failed", flush=True)
        print(f"    {tail(result)}", flush=True)
        out[side.name] = result
    return out


def many_events(args: argparse.Namespace, plan: dict[str, Any], platform: Platform,
                database_url: str) -> dict[str, Any]:
    """Every one of the plan's many events gets a reservation on a fresh platform; the
    platform's RSS (all its processes) before and after. Sending stops early when the RSS
    over idle passes ``--many-rss-limit-gib`` (or the machine runs low on memory)."""
    tokens = [u["token"] for u in plan["users"]]
    platform.start()
    time.sleep(args.idle_seconds)
    assert platform.pid is not None
    idle = processes.tree_rss(platform.pid)
    limit = args.many_rss_limit_gib * 2**30

    def stop() -> str | None:
        over = processes.tree_rss(platform.pid or 0) - idle
        if over > limit:
            return f"RSS over idle passed {args.many_rss_limit_gib} GiB"
        if psutil.virtual_memory().available < 3 * 2**30:
            return "less than 3 GiB of memory left on the machine"
        return None

    calls = [capacity.reservation(e, tokens[i % len(tokens)], f"many-{uuid.uuid4().hex}")
             for i, e in enumerate(plan["many"])]
    print(f"many events: {len(calls)} events, one reservation each, "
          f"{args.many_concurrency} at a time", flush=True)
    result = capacity.closed_loop(platform.base_url, calls, args.many_concurrency, stop)
    peak = processes.tree_rss(platform.pid)
    capacity.wait_settled(plain_url(database_url), "afisha",
                          [e["event_id"] for e in plan["many"]], time.monotonic(),
                          args.settle_seconds)
    after = processes.tree_rss(platform.pid)
    result.update(events=len(calls), idle_rss_gib=idle / 2**30, after_rss_gib=after / 2**30,
                  peak_rss_gib=max(peak, after) / 2**30,
                  over_idle_gib=(max(peak, after) - idle) / 2**30,
                  refused=result["failed"] + result["not_sent"])
    print(f"  {result['reserved']} reserved, {result['refused']} refused or not sent "
          f"({result['stopped'] or 'all sent'}), RSS idle {result['idle_rss_gib']:.2f} GiB, "
          f"peak {result['peak_rss_gib']:.2f} GiB (+{result['over_idle_gib']:.2f}), "
          f"in {result['elapsed_s']:.1f} s", flush=True)
    platform.stop()
    return result


def locust_pass(args: argparse.Namespace, options: Options, plan: dict[str, Any],
                plan_path: Path, platform: Platform, baseline: Baseline,
                database_url: str) -> list[dict[str, Any]]:
    """Locust per scenario: the baseline with the platform stopped, then a fresh platform."""
    runs: list[dict[str, Any]] = []
    for scenario in args.scenarios:
        print(f"locust: {scenario}", flush=True)
        baseline.start()
        runs.append(run_locust(scenario, "baseline", baseline.base_url, plan_path, options,
                               checkout=False))
        baseline.stop()
        platform.start()
        if scenario == "FlashSale":
            declare_hot(platform.base_url, plan["owner_token"], [plan["hot"]["event_id"]])
        runs.append(run_locust(scenario, "afisha", platform.base_url, plan_path, options,
                               checkout=True))
        snapshot = processes.cpu_snapshot()
        waited, left = drain(database_url, args.drain_seconds)
        runs[-1].update(drain_s=waited, drain_left=left,
                        drain_cpu_s=server_cpu(processes.cpu_delta(snapshot)))
        print(f"  backlog (outboxes, payments to create) worked off in {waited:.0f} s, "
              f"{left} left", flush=True)
        if scenario != args.scenarios[-1]:
            platform.stop()
    return runs


QUICK = {"rounds": 1, "round_seconds": 4, "open_seconds": 4, "hot_quantity": 1000,
         "spread_events": 20, "browse_events": 20, "cold_events": 20, "many_events": 100,
         "max_seconds": 30, "idle_seconds": 3, "settle_seconds": 60, "drain_seconds": 60}


def setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("AFISHA_"):
        raise argparse.ArgumentTypeError(f"expected AFISHA_NAME=VALUE, got {text!r}")
    return name, value


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--quick", action="store_true",
        help="a short smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v}"
                                               for k, v in QUICK.items()))
    add("--users", type=int, default=64, help="prepared users = wrk connections = Locust users")
    add("--rounds", type=int, default=3, help="wrk rounds per side and scenario (3)")
    add("--round-seconds", type=float, default=10, help="length of a wrk round (10)")
    add("--wrk-threads", type=int, default=2)
    add("--open-seconds", type=float, default=15, help="length of the open-loop run (15)")
    add("--open-rate", type=float, default=0,
        help="arrivals/s of the open-loop run (the baseline's median sale rate)")
    add("--cold-rate", type=float, default=20, help="arrivals/s of first reservations (20)")
    add("--settle-seconds", type=float, default=120,
        help="longest wait for a round to settle (payments and analytics rows)")
    add("--capacity", nargs="*", default=list(CAPACITY), choices=CAPACITY,
        help="capacity-pass scenarios (all)")
    add("--many-events", type=int, default=1000, help="events on sale at once (1000)")
    add("--many-concurrency", type=int, default=16)
    add("--many-rss-limit-gib", type=float, default=2.0,
        help="stop sending in the many-events scenario past this RSS over idle (2 GiB)")
    add("--idle-seconds", type=float, default=10, help="idle time before measuring idle RSS")
    add("--spread-events", type=int, default=100)
    add("--browse-events", type=int, default=100)
    add("--cold-events", type=int, default=100, help="never-touched events")
    add("--spawn-rate", type=float, default=64, help="Locust users started per second")
    add("--max-seconds", type=int, default=60,
        help="cap on each Locust sale scenario; a sale normally ends when sold out")
    add("--browse-seconds", type=int, default=30)
    add("--session-seconds", type=int, default=20)
    add("--hot-quantity", type=int, default=5000, help="seats of the Locust flash sale")
    add("--spread-quantity", type=int, default=UNLIMITED, help="seats per spread event")
    add("--price", type=int, default=150000, help="minor units (RUB kopecks)")
    add("--drain-seconds", type=float, default=60,
        help="longest wait for Afisha's backlog after each Locust scenario")
    add("--setting", type=setting, action="append", default=[], metavar="AFISHA_NAME=VALUE",
        help="a setting for Afisha's platform (repeatable), e.g. to compare two values")
    add("--results", type=Path, default=HERE / "results")
    add("--scenarios", nargs="*", default=["FlashSale"], choices=SCENARIOS,
        help="Locust scenarios (FlashSale)")
    args = parser.parse_args()
    if args.quick:
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in sys.argv[1:]}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    return args


def main() -> None:
    args = arguments()
    options = Options(args.users, args.spawn_rate, args.max_seconds, args.browse_seconds,
                      args.session_seconds, args.hot_quantity, args.spread_quantity, args.price,
                      args.results.resolve(), spread_events=args.spread_events,
                      browse_events=args.browse_events, cold_events=args.cold_events,
                      many_events=args.many_events, settings=dict(args.setting))
    capacity.wrk_binary()
    options.results.mkdir(parents=True, exist_ok=True)
    for log in ("afisha-run.log", "baseline.log", "wrk.log", "postgres.log"):
        (options.results / log).unlink(missing_ok=True)
    began = time.monotonic()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="afisha-bench-")))
        processes.MARKERS["data_dir"] = str(work)
        server_url = os.environ.get("AFISHA_BENCH_DATABASE_URL")
        if not server_url:
            server_url = start_embedded(work, stack, options.results)
        asyncio.run(check_connections(server_url))
        database_url = with_database(server_url, f"afisha_bench_{options.run_id}")
        asyncio.run(create_database(server_url, f"afisha_bench_{options.run_id}"))
        print(f"database {database_url}", flush=True)

        platform = Platform(database_url, options, work)
        stack.callback(platform.stop)
        platform.start()
        prepared = time.monotonic()
        plan = prepare(platform.base_url, options)
        asyncio.run(seed_baseline(database_url, plan, options.price))
        plan_path = options.results / "plan.json"
        plan_path.write_text(json.dumps(plan))
        print(f"prepared {len(plan['users'])} users, {len(plan['quantities'])} events in "
              f"{time.monotonic() - prepared:.0f} s", flush=True)

        baseline = Baseline(database_url, options, work)
        stack.callback(baseline.stop)
        baseline.start()
        found = capacity_pass(args, options, plan, platform, baseline, database_url)
        baseline.stop()
        if plan["many"]:
            found["many"] = many_events(args, plan, platform, database_url)
        runs = locust_pass(args, options, plan, plan_path, platform, baseline, database_url)
        if platform.process is None:
            platform.start()
        audit = asyncio.run(report.audit(plain_url(database_url), plan, runs,
                                         extra_reserved=client_reserved(found)))
        platform.stop()
    report.write(options.results, runs, audit, time.monotonic() - began, found, vars(args))


def client_reserved(found: dict[str, Any]) -> dict[str, int]:
    """201s the capacity pass's clients saw, per target (for the audit's unaccounted rows)."""
    seen = {"afisha": 0, "baseline": 0}
    for r in found["rounds"]:
        seen[r["target"]] += r["reserved"]
    for part in ("open_loop", "cold"):
        for target, result in found.get(part, {}).items():
            seen[target] += result["reserved"]
    if "many" in found:
        seen["afisha"] += found["many"]["reserved"]
    return seen


if __name__ == "__main__":
    main()
