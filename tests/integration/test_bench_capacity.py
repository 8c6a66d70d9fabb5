"""The capacity pass's load generators against the row-lock baseline on real PostgreSQL: wrk's
script must give every request a fresh idempotency key and rotate the prepared users (else the
benchmark would measure replays), its counts must match the database, the settlement poll must
see the baseline's payment and analytics rows, and the open-loop driver must send every call.
The tests are plain functions: the benchmark's helpers run their own event loops."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import jwt
import pytest

from benchmarks import capacity
from cluster.ports import free_port, wait_until_healthy
from tests.conftest import new_database, unavailable

SECRET = "capacity-test-" + "k" * 40
ROOT = Path(__file__).resolve().parents[2]


def token(user_id: str) -> str:
    now = datetime.now(UTC)
    return jwt.encode({"iss": "afisha", "aud": "afisha-api", "sub": user_id, "iat": now,
                       "exp": now + timedelta(minutes=5), "typ": "access", "roles": []},
                      SECRET, algorithm="HS256")


@pytest.fixture
def baseline(pg_server: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The baseline in its own uvicorn process (as ``make bench`` runs it): (URL, database)."""
    with new_database(pg_server, "capacity") as url:
        port = free_port()
        env = {**os.environ, "BASELINE_DATABASE_URL": url, "BASELINE_JWT_SECRET": SECRET,
               "BASELINE_POOL_SIZE": "4"}
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "benchmarks.baseline.app:app", "--port", str(port),
             "--log-level", "warning"], env=env, cwd=ROOT,
            stdout=(tmp_path / "baseline.log").open("w"), stderr=subprocess.STDOUT)
        try:
            wait_until_healthy(process, f"http://127.0.0.1:{port}/openapi.json", limit_s=60)
            yield f"http://127.0.0.1:{port}", url
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)


async def seed(url: str, quantity: int) -> dict[str, str]:
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
    return {"event_id": event_id, "ticket_type_id": tt}


async def registrations(url: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS regs, count(DISTINCT user_id) AS users, "
            "(SELECT count(*) FROM bench_baseline.idempotency_keys) AS keys "
            "FROM bench_baseline.registrations")
    finally:
        await conn.close()
    return int(row["regs"]), int(row["users"]), int(row["keys"])


def test_wrk_rounds_make_fresh_keys_rotate_users_and_match_the_database(
        baseline: tuple[str, str], tmp_path: Path) -> None:
    if shutil.which("wrk") is None:  # .ci/run installs it
        unavailable("wrk (apt-get install -y wrk)", "not installed")
    base_url, url = baseline
    target = asyncio.run(seed(url, 10**6))
    users = [f"user-{n}" for n in range(5)]
    plan = tmp_path / "plan.lua"
    capacity.lua_plan(plan, "test-round", "reserve", [token(u) for u in users], [target], [])

    out = capacity.run_wrk(base_url, plan, 2, connections=4, threads=2, log=tmp_path / "wrk.log")

    regs, distinct_users, keys = asyncio.run(registrations(url))
    assert out["statuses"].get("201", 0) > 0
    assert set(out["statuses"]) == {"201"}
    # Every answered request made its own registration: no key was replayed. Requests still
    # in flight when wrk stopped may have written a row no one read (at most one per connection).
    assert keys == regs
    assert 0 <= regs - out["statuses"]["201"] <= 4
    assert distinct_users == len(users)
    settled = capacity.wait_settled(url, "baseline", [target["event_id"]],
                                    began=0, limit_s=10**9)
    assert settled["registrations"] == regs and settled["unsettled"] == 0


def test_the_open_loop_sends_every_call_and_counts_answers(
        baseline: tuple[str, str]) -> None:
    base_url, url = baseline
    target = asyncio.run(seed(url, 15))
    calls = [capacity.reservation(target, token(f"u{n}"), f"key-{n}") for n in range(20)]

    result = capacity.open_loop(base_url, calls, rate=100)

    assert result["sent"] == 20
    assert result["statuses"] == {201: 15, 409: 5}
    assert result["failed"] == 5 and result["errors_5xx"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert asyncio.run(registrations(url))[0] == 15
    # The three slowest of 20 answers (1% is fewer), in the order they were due.
    tail = result["slowest"]
    assert len(tail) == 3 and [due for due, _, _ in tail] == sorted(due for due, _, _ in tail)
    assert max(ms for _, ms, _ in tail) == pytest.approx(result["max_ms"], abs=0.1)
    assert all(0 <= due <= 19 / 100 + 1e-6 for due, _, _ in tail)


def test_slowest_lists_the_tail_in_the_order_it_was_due() -> None:
    samples = [(201, s / 1000) for s in [5, 90, 6, 7, 80, 5, 4, 3, 2, 1]]
    due_at = [i / 10 for i in range(10)]

    assert capacity.slowest(samples, due_at, share=0.2, at_least=1) == [(0.1, 90.0, 201),
                                                                        (0.4, 80.0, 201)]
    assert capacity.slowest(samples, due_at, share=0.001, at_least=1) == [(0.1, 90.0, 201)]
    assert capacity.slowest(samples, due_at, share=0.001) == [(0.1, 90.0, 201),
                                                             (0.3, 7.0, 201), (0.4, 80.0, 201)]
    assert capacity.slowest([], [], share=0.01) == []


def test_percentile_is_nearest_rank() -> None:
    assert capacity.percentile([], 99) == 0.0
    values = list(range(1, 101))
    assert capacity.percentile(values, 50) == 50
    assert capacity.percentile(values, 99) == 99
    assert capacity.percentile([5.0], 99) == 5.0
