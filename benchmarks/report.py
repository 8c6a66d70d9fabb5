"""The benchmark's numbers: Locust's CSVs read back, the database audit, the table and the plot."""

from __future__ import annotations

import asyncio
import csv
import json
import platform
import re
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

ACTIVE = ("pending_payment", "confirmed", "checked_in")
TABLES = {"afisha": "event_service", "baseline": "bench_baseline"}


def read_locust(prefix: Path) -> dict[str, Any]:
    """Per request name: count, failures, requests/s, p50/p95/p99; 5xx seen; the sale's span."""
    names: dict[str, dict[str, float]] = {}
    with open(f"{prefix}_stats.csv") as f:
        for row in csv.DictReader(f):
            names[row["Name"]] = {
                "count": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "rps": float(row["Requests/s"]), "p50": float(row["50%"]),
                "p95": float(row["95%"]), "p99": float(row["99%"])}
    errors_5xx = 0
    with open(f"{prefix}_failures.csv") as f:
        for row in csv.DictReader(f):
            if re.search(r"\b5\d\d\b", row["Error"]):
                errors_5xx += int(row["Occurrences"])
    sale_file = Path(f"{prefix}_sale.json")
    sale = json.loads(sale_file.read_text()) if sale_file.exists() else {}
    reserved = int(sale.get("reserved") or 0)
    span = (sale["last"] - sale["first"]) if reserved > 1 else 0.0
    return {"names": names, "errors_5xx": errors_5xx, "reserved": reserved,
            "reserve_per_s": reserved / span if span > 0 else 0.0}


async def audit(database_url: str, plan: dict[str, Any], runs: list[dict[str, Any]],
                payment_wait_s: float = 120, extra_reserved: dict[str, int] | None = None,
                ) -> dict[str, dict[str, Any]]:
    """Per target: seats over quantity, rows against what clients saw; Afisha's paid sample."""
    conn = await asyncpg.connect(database_url)
    result: dict[str, dict[str, Any]] = {}
    try:
        for target, schema in TABLES.items():
            rows = await conn.fetch(
                f"SELECT t.id, t.quantity, count(r.id) AS rows, coalesce(sum(r.quantity) "
                f"FILTER (WHERE r.status = ANY($1::text[])), 0) AS active "
                f"FROM {schema}.ticket_types t LEFT JOIN {schema}.registrations r "
                f"ON r.ticket_type_id = t.id GROUP BY t.id, t.quantity", list(ACTIVE))
            by_id = {r["id"]: r for r in rows}
            hot = by_id.get(plan["hot"]["ticket_type_id"])
            seen = sum(r["reserved"] for r in runs if r["target"] == target)
            seen += (extra_reserved or {}).get(target, 0)
            result[target] = {
                "oversell": sum(max(0, r["active"] - r["quantity"]) for r in rows),
                "registrations": sum(r["rows"] for r in rows), "client_reserved": seen,
                "hot_sold": hot["active"] if hot else 0,
                "hot_quantity": hot["quantity"] if hot else 0}
        if any(r["target"] == "baseline" for r in runs):
            drift = await conn.fetchval(
                "SELECT count(*) FROM bench_baseline.ticket_types t WHERE t.taken <> "
                "(SELECT coalesce(sum(quantity), 0) FROM bench_baseline.registrations r "
                " WHERE r.ticket_type_id = t.id AND r.status = ANY($1::text[]))", list(ACTIVE))
            result["baseline"]["counter_drift"] = int(drift)
        if any(r["target"] == "afisha" and r["scenario"] == "FlashSale" for r in runs):
            result["afisha"].update(await paid_sample(conn, plan, payment_wait_s))
    finally:
        await conn.close()
    for values in result.values():
        values["unaccounted"] = values["registrations"] - values["client_reserved"]
    return result


async def paid_sample(conn: asyncpg.Connection, plan: dict[str, Any],
                      wait_s: float) -> dict[str, int]:
    """Payments completed through the sandbox checkout on the hot event, and how many of their
    registrations are confirmed (waiting for ``payment.completed`` to reach the event service)."""
    deadline = time.monotonic() + wait_s
    while True:
        paid = await conn.fetch(
            "SELECT registration_id::text AS id FROM payment_service.payments "
            "WHERE event_id = $1::uuid AND status = 'completed'", plan["hot"]["event_id"])
        ids = [r["id"] for r in paid]
        confirmed = await conn.fetchval(
            "SELECT count(*) FROM event_service.registrations WHERE id = ANY($1::text[]) "
            "AND status = 'confirmed'", ids)
        if (paid and confirmed == len(ids)) or time.monotonic() > deadline:
            return {"paid": len(ids), "paid_confirmed": int(confirmed)}
        await asyncio.sleep(1)


# --- output -------------------------------------------------------------------------------
def _run(runs: list[dict[str, Any]], scenario: str, target: str) -> dict[str, Any] | None:
    return next((r for r in runs if r["scenario"] == scenario and r["target"] == target), None)


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def table(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["| scenario | target | reservations | per s | p50 ms | p95 ms | p99 ms | failures "
             "| 5xx | server CPU s / 1,000 | with backlog | Afisha / baseline |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for scenario in ("Session", "FlashSale", "SpreadSale", "Browse"):
        for target in ("baseline", "afisha"):
            run = _run(runs, scenario, target)
            if run is None:
                continue
            name = "session" if scenario == "Session" else "reserve"
            stats = run["names"].get(name, {"count": 0, "failures": 0, "rps": 0.0, "p50": 0.0,
                                            "p95": 0.0, "p99": 0.0})
            done = stats["count"] if scenario == "Session" else run["reserved"]
            rate = stats["rps"] if scenario == "Session" else run["reserve_per_s"]
            failures = sum(int(n["failures"]) for n in run["names"].values()
                           if n is not run["names"].get("Aggregated"))
            cpu = 1000 * run["server_cpu_s"] / done if done else 0.0
            total = (1000 * (run["server_cpu_s"] + run.get("drain_cpu_s", 0.0)) / done
                     if done else 0.0)
            other = _run(runs, scenario, "baseline")
            ratio = ""
            if target == "afisha" and other is not None:
                ratio = f"{_ratio(rate, rate_of(other)):.2f}"
            lines.append(f"| {scenario} | {target} | {done} | {rate:.0f} | {stats['p50']:.0f} "
                         f"| {stats['p95']:.0f} | {stats['p99']:.0f} | {failures} "
                         f"| {run['errors_5xx']} | {cpu:.2f} | {total:.2f} | {ratio} |")
    return lines


def rate_of(run: dict[str, Any]) -> float:
    if run["scenario"] == "Session":
        return float(run["names"].get("session", {}).get("rps", 0.0))
    return float(run["reserve_per_s"])


def cpu_table(runs: list[dict[str, Any]]) -> list[str]:
    """CPU seconds each component spent during the flash sale, per target (where time goes)."""
    flash = [r for r in runs if r["scenario"] == "FlashSale" and r.get("cpu_by_component")]
    if not flash:
        return []
    names = sorted({n for r in flash for n in r["cpu_by_component"]},
                   key=lambda n: -max(r["cpu_by_component"].get(n, 0.0) for r in flash))
    lines = ["| FlashSale: CPU s by component | " + " | ".join(r["target"] for r in flash) + " |",
             "|---|" + "---|" * len(flash)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(
            f"{r['cpu_by_component'].get(name, 0.0):.1f}" for r in flash) + " |")
    lines.append("| locust (load generator) | " + " | ".join(
        f"{r['locust_cpu_s']:.1f}" for r in flash) + " |")
    lines.append("| wall-clock s | " + " | ".join(f"{r['elapsed_s']:.1f}" for r in flash) + " |")
    return lines


def plot(results: Path, runs: list[dict[str, Any]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in ("FlashSale", "SpreadSale", "Browse", "Session")
                 if any(r["scenario"] == s for r in runs)]
    fig, axes = plt.subplots(2, len(scenarios), figsize=(5 * len(scenarios), 7), squeeze=False)
    for col, scenario in enumerate(scenarios):
        name = "session" if scenario == "Session" else "reserve"
        for target, color in (("baseline", "tab:gray"), ("afisha", "tab:blue")):
            history = results / f"{scenario.lower()}_{target}_stats_history.csv"
            if not history.exists():
                continue
            with history.open() as f:
                rows = [r for r in csv.DictReader(f) if r["Name"] == name]
            if not rows:
                continue
            t0 = int(rows[0]["Timestamp"])
            xs = [int(r["Timestamp"]) - t0 for r in rows]
            axes[0][col].plot(xs, [float(r["Requests/s"]) for r in rows], color=color,
                              label=target)
            axes[1][col].plot(xs, [_num(r["99%"]) for r in rows], color=color,
                              label=f"{target} p99")
            axes[1][col].plot(xs, [_num(r["50%"]) for r in rows], color=color, linestyle=":",
                              label=f"{target} p50")
        axes[0][col].set_title(f"{scenario}: {name} requests/s")
        axes[1][col].set_title(f"{scenario}: latency, ms")
        axes[1][col].set_xlabel("seconds")
        for ax in (axes[0][col], axes[1][col]):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = results / "bench.png"
    fig.savefig(path, dpi=100)
    return path


def _num(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("nan")


def _median(found: dict[str, Any], scenario: str, target: str, key: str) -> float:
    values = [r[key] for r in found.get("rounds", [])
              if r["scenario"] == scenario and r["target"] == target]
    return float(statistics.median(values)) if values else 0.0


def capacity_ratios(found: dict[str, Any]) -> dict[str, float]:
    """Afisha ÷ baseline of the medians over the wrk rounds."""
    def ratio(scenario: str, key: str) -> float:
        return _ratio(_median(found, scenario, "afisha", key),
                      _median(found, scenario, "baseline", key))
    return {"sale_ratio": ratio("FlashSale", "sale_rate"),
            "settled_ratio": ratio("FlashSale", "settled_rate"),
            "spread_ratio": ratio("SpreadSale", "sale_rate"),
            "browse_ratio": ratio("Browse", "ok_rate")}


def capacity_tables(found: dict[str, Any]) -> list[str]:
    rounds = found.get("rounds", [])
    if not rounds:
        return []
    lines = ["## Capacity pass (wrk, alternating rounds)", "",
             "| scenario | target | round | 201s | sale /s | 2xx /s | settled after s | "
             "settled /s | unsettled | p50 ms | p99 ms | 5xx | timeouts | socket errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        lines.append(
            f"| {r['scenario']} | {r['target']} | {r['round']} | {r['reserved']} "
            f"| {r['sale_rate']:.0f} | {r['ok_rate']:.0f} | {r['settled_s']:.1f} "
            f"| {r['settled_rate']:.0f} | {r['unsettled']} | {r['p50_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['errors_5xx']} | {r['timeouts']} "
            f"| {r['socket_errors']} |")
    lines += ["", "| scenario (medians) | baseline | afisha | Afisha / baseline |",
              "|---|---|---|---|"]
    for scenario, key, label in (("FlashSale", "sale_rate", "sale rate, reservations/s"),
                                 ("FlashSale", "settled_rate", "settled rate, reservations/s"),
                                 ("SpreadSale", "sale_rate", "sale rate, reservations/s"),
                                 ("SpreadSale", "settled_rate", "settled rate, reservations/s"),
                                 ("Browse", "ok_rate", "2xx answers/s")):
        b, a = (_median(found, scenario, t, key) for t in ("baseline", "afisha"))
        if a or b:
            lines.append(f"| {scenario}: {label} | {b:.0f} | {a:.0f} | {_ratio(a, b):.2f} |")
    for scenario in ("FlashSale", "SpreadSale", "Browse"):
        lines += cpu_per_reservation(rounds, scenario)
    return lines


def cpu_per_reservation(rounds: list[dict[str, Any]], scenario: str) -> list[str]:
    """CPU ms per reservation (Browse: per 2xx answer) by component, over all of a side's
    rounds, each round's sale and settlement together."""
    per: dict[str, dict[str, float]] = {}
    for target in ("baseline", "afisha"):
        mine = [r for r in rounds if r["scenario"] == scenario and r["target"] == target]
        done = sum(r["ok" if scenario == "Browse" else "reserved"] for r in mine)
        totals: dict[str, float] = {}
        for r in mine:
            for name, seconds in r["cpu_by_component"].items():
                totals[name] = totals.get(name, 0.0) + seconds
        per[target] = {k: 1000 * v / done for k, v in totals.items()} if done else {}
    if not any(per.values()):
        return []
    names = sorted({n for v in per.values() for n in v}, key=lambda n: -max(
        v.get(n, 0.0) for v in per.values()))
    unit = "2xx answer" if scenario == "Browse" else "reservation"
    lines = ["", f"| {scenario}: CPU ms per {unit} (wrk rounds, sale + settlement) "
                 "| baseline rounds | afisha rounds |", "|---|---|---|"]
    for name in names:
        lines.append(f"| {name} | {per['baseline'].get(name, 0.0):.2f} "
                     f"| {per['afisha'].get(name, 0.0):.2f} |")
    for target in ("baseline", "afisha"):
        per[target]["total"] = sum(per[target].values())
    lines.append(f"| total | {per['baseline']['total']:.2f} | {per['afisha']['total']:.2f} |")
    return lines


def latency_tables(found: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for part, title in (("open_loop", "Flash sale, open loop at the baseline's median maximum"),
                        ("cold", "First reservation on a never-touched event (open loop)")):
        if not found.get(part):
            continue
        lines += ["", f"| {title} | rate /s | sent | 201s | p50 ms | p99 ms | max ms | failed "
                      "| 5xx |", "|---|---|---|---|---|---|---|---|---|"]
        for target in ("baseline", "afisha"):
            r = found[part].get(target)
            if r:
                lines.append(f"| {target} | {r['rate']:.0f} | {r['sent']} | {r['reserved']} "
                             f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} "
                             f"| {r['failed']} | {r['errors_5xx']} |")
    many = found.get("many")
    if many:
        lines += ["", "| Many events on sale at once (Afisha) | |", "|---|---|",
                  f"| events, one reservation each | {many['events']} |",
                  f"| 201s / refused or not sent | {many['reserved']} / {many['refused']} |",
                  f"| stopped early | {many['stopped'] or 'no'} |",
                  f"| platform RSS idle / peak / after GiB | {many['idle_rss_gib']:.2f} / "
                  f"{many['peak_rss_gib']:.2f} / {many['after_rss_gib']:.2f} |",
                  f"| RSS over idle GiB | {many['over_idle_gib']:.2f} |",
                  f"| p50 / p99 ms (closed loop) | {many['p50_ms']:.0f} / {many['p99_ms']:.0f} |",
                  f"| took s | {many['elapsed_s']:.1f} |"]
    return lines


def errors_5xx_of(runs: list[dict[str, Any]], found: dict[str, Any]) -> int:
    """Every 5xx Afisha answered, in both passes."""
    total = sum(r["errors_5xx"] for r in runs if r["target"] == "afisha")
    total += sum(r["errors_5xx"] for r in found.get("rounds", []) if r["target"] == "afisha")
    for part in ("open_loop", "cold"):
        total += found.get(part, {}).get("afisha", {}).get("errors_5xx", 0)
    return int(total + found.get("many", {}).get("errors_5xx", 0))


def targets_table(ratios: dict[str, float], found: dict[str, Any], oversell: int,
                  errors_5xx: int) -> list[str]:
    p99 = found.get("open_loop", {}).get("afisha", {}).get("p99_ms")
    cold = found.get("cold", {}).get("afisha", {}).get("p99_ms")
    many = found.get("many")

    def check(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "**not met**")

    def ran(scenario: str) -> bool:
        return any(r["scenario"] == scenario for r in found.get("rounds", []))
    rows = [
        ("flash sale, sale rate ≥ 2.5x", f"{ratios['sale_ratio']:.2f}x",
         check(ratios["sale_ratio"] >= 2.5 if ran("FlashSale") else None)),
        ("flash sale, open-loop p99 ≤ 150 ms", f"{p99:.0f} ms" if p99 is not None else "",
         check(p99 <= 150 if p99 is not None else None)),
        ("0 oversell", str(oversell), check(oversell == 0)),
        ("0 5xx (all of Afisha's answers)", str(errors_5xx), check(errors_5xx == 0)),
        ("flash sale, settled rate ≥ 1.5x", f"{ratios['settled_ratio']:.2f}x",
         check(ratios["settled_ratio"] >= 1.5 if ran("FlashSale") else None)),
        ("spread sale ≥ 1.5x", f"{ratios['spread_ratio']:.2f}x",
         check(ratios["spread_ratio"] >= 1.5 if ran("SpreadSale") else None)),
        ("cold event, first reservation p99 ≤ 50 ms", f"{cold:.0f} ms" if cold is not None
         else "", check(cold <= 50 if cold is not None else None)),
        ("many events, RSS over idle ≤ 1 GiB, none refused",
         f"{many['over_idle_gib']:.2f} GiB, {many['refused']} refused" if many else "",
         check(many["over_idle_gib"] <= 1 and many["refused"] == 0) if many else "n/a"),
        ("browse ≥ 1x", f"{ratios['browse_ratio']:.2f}x",
         check(ratios["browse_ratio"] >= 1 if ran("Browse") else None)),
    ]
    return ["", "| target | measured | |", "|---|---|---|",
            *(f"| {a} | {b} | {c} |" for a, b, c in rows)]


def write(results: Path, runs: list[dict[str, Any]], audit: dict[str, dict[str, Any]],
          elapsed_s: float, found: dict[str, Any], args: dict[str, Any]) -> None:
    machine = (f"{platform.node()}, {psutil.cpu_count()} CPUs, "
               f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python "
               f"{platform.python_version()}")
    session_a, session_b = _run(runs, "Session", "afisha"), _run(runs, "Session", "baseline")
    gateway_ratio = (_ratio(rate_of(session_a), rate_of(session_b))
                     if session_a and session_b else 0.0)
    ratios = capacity_ratios(found)
    p99 = found.get("open_loop", {}).get("afisha", {}).get("p99_ms", 0.0)
    cold_p99 = found.get("cold", {}).get("afisha", {}).get("p99_ms", 0.0)
    oversell = int(audit.get("afisha", {}).get("oversell", 0))
    errors_5xx = errors_5xx_of(runs, found)
    lines = [f"# Ticket-sale benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
             f"machine: {machine}; whole run {elapsed_s / 60:.1f} min", "",
             *targets_table(ratios, found, oversell, errors_5xx), "",
             *capacity_tables(found), *latency_tables(found)]
    if found.get("hot"):
        lines += ["", "Declared hot: " + "; ".join(found["hot"])]
    if runs:
        lines += ["", "## Locust pass", "", *table(runs)]
    lines += ["", "| audit (all passes) | baseline | afisha |", "|---|---|---|"]
    for key in ("oversell", "registrations", "client_reserved", "unaccounted", "hot_sold",
                "hot_quantity", "counter_drift", "paid", "paid_confirmed"):
        lines.append(f"| {key} | {audit.get('baseline', {}).get(key, '')} "
                     f"| {audit.get('afisha', {}).get(key, '')} |")
    if runs:
        lines += ["", *cpu_table(runs)]
        drains = [f"{r['scenario']} {r['drain_s']:.0f} s ({r['drain_left']} left)"
                  for r in runs if "drain_s" in r]
        lines += ["", "Afisha's backlog (outbox rows, payments to create) worked off after: "
                  + ", ".join(drains)]
    if session_a and session_b:
        lines.append(f"gateway_ratio={gateway_ratio:.2f}")
    summary = "\n".join(lines)
    (results / "summary.md").write_text(summary + "\n")
    (results / "runs.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in args.items()}, "runs": runs, "capacity": found,
         "audit": audit}, indent=1))
    print(summary)
    if runs:
        print(f"plot: {plot(results, runs)}")
    print(f"sale_ratio={ratios['sale_ratio']:.2f} settled_ratio={ratios['settled_ratio']:.2f} "
          f"spread_ratio={ratios['spread_ratio']:.2f} browse_ratio={ratios['browse_ratio']:.2f} "
          f"p99_ms={p99:.0f} cold_p99_ms={cold_p99:.0f} oversell={oversell} "
          f"errors_5xx={errors_5xx}")
