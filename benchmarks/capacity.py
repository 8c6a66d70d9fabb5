"""The capacity pass of ``make bench``: what each side sells at most, and how fast it answers
at a given rate.

- ``wrk_rounds``: wrk with the same connections against the baseline and Afisha in alternating
  rounds (B A B A …); each round is followed by the wait until it is *settled* (every
  registration of the round's events has its pending payment and its analytics row) and until
  the platform is quiet again, so no round bills the next. Per round: the sale rate (201s ÷
  wrk's duration), the settled rate (201s ÷ time from the round's start until settled) and the
  CPU each component spent, sale and settlement together.
- ``open_loop``: requests sent at fixed times (an arrival rate), latency measured from the time
  each request was due, not from when a free connection sent it (no coordinated omission).
- ``closed_loop``: a list of requests with at most N in flight, and a guard that stops sending.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
import uvloop

from benchmarks import processes

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk_sale.lua"

# Per target: registrations on the given events, those with a pending payment, those recorded
# by analytics. Afisha's are written by three services; the baseline's in one transaction.
SETTLEMENT = {
    "afisha": (
        "SELECT count(*) FROM event_service.registrations WHERE event_id = ANY($1::text[])",
        "SELECT count(DISTINCT registration_id) FROM payment_service.payments "
        "WHERE event_id = ANY($1::uuid[])",
        "SELECT count(DISTINCT message_id) FROM analytics_service.domain_events "
        "WHERE type = 'registration.created' AND event_id = ANY($1::text[])"),
    "baseline": (
        "SELECT count(*) FROM bench_baseline.registrations WHERE event_id = ANY($1::text[])",
        "SELECT count(DISTINCT registration_id) FROM bench_baseline.payments "
        "WHERE event_id = ANY($1::text[])",
        "SELECT count(DISTINCT message_id) FROM bench_baseline.domain_events "
        "WHERE type = 'registration.created' AND event_id = ANY($1::text[])"),
}


@dataclass
class Side:
    """One target of the comparison: its name, URL and (Afisha) the platform's root PID."""

    name: str
    base_url: str
    pid: int | None = None


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (Debian/Ubuntu), "
                         "or `make bench`, which installs it when it can")
    return found


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


# --- settlement -----------------------------------------------------------------------------
async def settlement(database_url: str, side: str, event_ids: list[str]) -> tuple[int, int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        regs, paid, recorded = [int(await conn.fetchval(sql, event_ids))
                                for sql in SETTLEMENT[side]]
    finally:
        await conn.close()
    return regs, paid, recorded


def wait_settled(database_url: str, side: str, event_ids: list[str], began: float,
                 limit_s: float, poll_s: float = 0.5) -> dict[str, Any]:
    """Poll until every registration on ``event_ids`` has its payment and analytics row (or
    ``limit_s`` from ``began``, a ``time.monotonic()``); when, and what was left."""
    while True:
        regs, paid, recorded = asyncio.run(settlement(database_url, side, event_ids))
        now = time.monotonic()
        if (paid >= regs and recorded >= regs) or now - began > limit_s:
            return {"settled_s": now - began, "registrations": regs,
                    "unsettled": max(regs - paid, regs - recorded, 0)}
        time.sleep(poll_s)


def wait_quiet(pid: int | None, limit_s: float, cores: float = 0.5) -> float:
    """Wait until the process tree ``pid`` uses less than ``cores`` over a second (work still
    running after a round, e.g. actors starting); seconds waited."""
    began = time.monotonic()
    if pid is None:
        return 0.0
    while time.monotonic() - began < limit_s:
        before = processes.tree_cpu_seconds(pid)
        time.sleep(1)
        if processes.tree_cpu_seconds(pid) - before < cores:
            break
    return time.monotonic() - began


# --- wrk ------------------------------------------------------------------------------------
def lua_plan(path: Path, run: str, mode: str, tokens: list[str],
             targets: list[dict[str, str]], browse: list[str]) -> None:
    """The plan file wrk_sale.lua reads (JSON strings are valid Lua strings here: ids and JWTs
    are ASCII without backslashes)."""
    def strings(items: list[str]) -> str:
        return "{" + ",".join(json.dumps(s) for s in items) + "}"
    pairs = ",".join("{" + json.dumps(t["event_id"]) + "," + json.dumps(t["ticket_type_id"])
                     + "}" for t in targets)
    path.write_text(f"return {{run={json.dumps(run)}, mode={json.dumps(mode)}, "
                    f"tokens={strings(tokens)}, targets={{{pairs}}}, "
                    f"browse={strings(browse or [targets[0]['event_id']])}}}\n")


def run_wrk(base_url: str, plan_path: Path, seconds: float, connections: int, threads: int,
            log: Path) -> dict[str, Any]:
    command = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds:.0f}s",
               "--timeout", "10s", "-s", str(LUA), base_url]
    process = psutil.Popen(command, env={"BENCH_WRK_PLAN": str(plan_path), "PATH": "/usr/bin"},
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = 0.0
    while process.poll() is None:  # wrk's CPU, read while it lives
        try:
            times = process.cpu_times()
            cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    stdout, stderr = process.communicate(timeout=seconds + 120)
    with log.open("a") as f:
        f.write(f"$ {' '.join(command)}\n{stdout}{stderr}\n")
    line = next((s for s in stdout.splitlines() if s.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result ({process.returncode}): {stderr[-2000:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    result["cpu_s"] = cpu
    return result


def wrk_round(side: Side, *, scenario: str, number: int, mode: str, tokens: list[str],
              targets: list[dict[str, str]], browse: list[str], seconds: float,
              connections: int, threads: int, database_url: str, results: Path,
              run_id: str, settle_limit_s: float) -> dict[str, Any]:
    plan_path = results / f"wrk_{scenario.lower()}_{side.name}_{number}.lua"
    lua_plan(plan_path, f"{run_id}-{scenario}-{side.name}-{number}", mode, tokens, targets,
             browse)
    event_ids = sorted({t["event_id"] for t in targets})
    cpu_before = processes.cpu_snapshot()
    began = time.monotonic()
    out = run_wrk(side.base_url, plan_path, seconds, connections, threads,
                  results / "wrk.log")
    settled = wait_settled(database_url, side.name, event_ids, began, settle_limit_s)
    cpu = processes.cpu_delta(cpu_before)
    cpu["wrk (load generator)"] = round(out["cpu_s"], 3)
    quiet_s = wait_quiet(side.pid, 30)
    statuses = {int(k): v for k, v in out["statuses"].items()}
    duration = out["duration_us"] / 1e6
    reserved = statuses.get(201, 0)
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    result = {
        "scenario": scenario, "target": side.name, "round": number, "duration_s": duration,
        "reserved": reserved, "ok": ok, "statuses": statuses,
        "errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
        "socket_errors": out["connect_errors"] + out["read_errors"] + out["write_errors"],
        "timeouts": out["timeouts"], "p50_ms": out["p50_us"] / 1000,
        "p99_ms": out["p99_us"] / 1000, "sale_rate": reserved / duration if duration else 0.0,
        "ok_rate": ok / duration if duration else 0.0, **settled,
        "settled_rate": reserved / settled["settled_s"] if settled["settled_s"] else 0.0,
        "quiet_wait_s": quiet_s, "cpu_by_component": cpu}
    print(f"    {scenario} {side.name} round {number}: {result['sale_rate']:.0f} reserved/s "
          f"({result['ok_rate']:.0f} 2xx/s), settled {result['settled_rate']:.0f}/s in "
          f"{settled['settled_s']:.1f} s ({settled['unsettled']} unsettled), "
          f"p99 {result['p99_ms']:.0f} ms, 5xx {result['errors_5xx']}, "
          f"timeouts {out['timeouts']}", flush=True)
    return result


def alternate(baseline: Side, afisha: Side, rounds: int, **kwargs: Any) -> list[dict[str, Any]]:
    """``rounds`` rounds each, baseline first, alternating."""
    runs = []
    for number in range(1, rounds + 1):
        for side in (baseline, afisha):
            runs.append(wrk_round(side, number=number, **kwargs))
    return runs


def median_of(runs: list[dict[str, Any]], scenario: str, target: str, key: str) -> float:
    values = [r[key] for r in runs if r["scenario"] == scenario and r["target"] == target]
    return float(statistics.median(values)) if values else 0.0


# --- open and closed loops over HTTP ----------------------------------------------------------
@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


def reservation(target: dict[str, str], token: str, key: str) -> Call:
    return Call("POST", f"/api/v1/events/{target['event_id']}/registrations",
                {"Authorization": f"Bearer {token}", "Idempotency-Key": key,
                 "Content-Type": "application/json"},
                json.dumps({"ticket_type_id": target["ticket_type_id"], "quantity": 1}).encode())


async def _send(session: aiohttp.ClientSession, call: Call) -> int:
    try:
        async with session.request(call.method, call.path, headers=call.headers,
                                   data=call.body) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


def summarize(samples: list[tuple[int, float]], elapsed: float) -> dict[str, Any]:
    statuses: dict[int, int] = {}
    for status, _ in samples:
        statuses[status] = statuses.get(status, 0) + 1
    latencies = [1000 * s for _, s in samples]
    return {"sent": len(samples), "statuses": statuses, "elapsed_s": elapsed,
            "reserved": statuses.get(201, 0),
            "errors_5xx": sum(v for k, v in statuses.items() if k >= 500),
            "failed": sum(v for k, v in statuses.items() if not 200 <= k < 300),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies, default=0.0)}


async def _open_loop(base_url: str, calls: Sequence[Call], rate: float,
                     timeout_s: float) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        lead_s = 0.5  # time to create every call's task before the first is due
        start = loop.time() + lead_s
        started_at = datetime.now(UTC) + timedelta(seconds=lead_s)
        samples: list[tuple[int, float]] = [(0, 0.0)] * len(calls)  # in the order due

        async def one(i: int, call: Call) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            status = await _send(session, call)
            samples[i] = (status, loop.time() - due)

        await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)))
        result = summarize(samples, loop.time() - start)
        result["slowest"] = slowest(samples, [i / rate for i in range(len(samples))])
        result["started_at"] = started_at.isoformat(timespec="milliseconds")
        return result


def slowest(samples: list[tuple[int, float]], due_at: list[float], share: float = 0.01,
            at_least: int = 3) -> list[tuple[float, float, int]]:
    """The slowest ``share`` of the answers (at least ``at_least``: a p99 of 100 is the
    second slowest) as (due second, latency ms, status), in order of their due time: whether a
    tail is spread over the run or one stall that met a few requests."""
    ranked = sorted(range(len(samples)), key=lambda i: -samples[i][1])
    count = max(at_least, round(len(samples) * share))
    chosen = sorted(ranked[:count], key=lambda i: due_at[i])
    return [(round(due_at[i], 3), round(1000 * samples[i][1], 1), samples[i][0])
            for i in chosen]


def open_loop(base_url: str, calls: Sequence[Call], rate: float,
              timeout_s: float = 30) -> dict[str, Any]:
    """Send ``calls`` at ``rate`` per second, each at its due time whatever the answers before
    it; latency from the due time. Status 0 is a timeout or a broken connection."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(_open_loop(base_url, calls, rate, timeout_s))
    result["rate"] = rate
    return result


async def _closed_loop(base_url: str, calls: Sequence[Call], concurrency: int,
                       stop: Callable[[], str | None], timeout_s: float) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    pending = list(reversed(calls))
    samples: list[tuple[int, float]] = []
    stopped: list[str] = []
    async with aiohttp.ClientSession(base_url, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def worker() -> None:
            while pending and not stopped:
                call = pending.pop()
                sent = loop.time()
                samples.append((await _send(session, call), loop.time() - sent))

        async def guard() -> None:
            while pending and not stopped:
                reason = stop()
                if reason:
                    stopped.append(reason)
                await asyncio.sleep(0.5)

        guarding = asyncio.create_task(guard())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        guarding.cancel()
        result = summarize(samples, loop.time() - began)
    result.update(not_sent=len(pending), stopped=stopped[0] if stopped else None)
    return result


def closed_loop(base_url: str, calls: Sequence[Call], concurrency: int,
                stop: Callable[[], str | None], timeout_s: float = 30) -> dict[str, Any]:
    """Send ``calls`` with at most ``concurrency`` in flight; ``stop()`` is asked twice a second
    and a reason it returns ends the sending (the calls not sent are counted)."""
    return asyncio.run(_closed_loop(base_url, calls, concurrency, stop, timeout_s))
