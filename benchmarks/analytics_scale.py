"""Analytics at scale: raw rows generated in SQL over many events, then the event dashboard
(p50/p95), the organization report, the ingest rate of domain events through the production
consumer (inbox + facts + rollups in one transaction per batch) and of ``/track`` items through
the tracking use case, and the rollup lag (the time a consumed batch takes to commit: the
rollups are in the same transaction, so once a batch has committed its figures are visible).

    python benchmarks/analytics_scale.py [--rows 5000000] [--events 1000] [--dashboards 200]
                                         [--ingest-messages 20000] [--track-batches 400]

Needs PostgreSQL (AFISHA_TEST_DATABASE_URL, default postgres@127.0.0.1:5432); a temporary
database is created and dropped. Numbers go to stdout and ``results/analytics_scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy import text

from cluster.settings import Settings
from messaging.consumer import ConsumerRuntime
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.analytics import service
from serve.analytics.domain import COUNTERS
from serve.analytics.tracking import record_domain_event
from storage import migrate
from storage.engine import create_engine, sessionmaker

PG = os.environ.get("AFISHA_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).parent / "results"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


GENERATE = """
-- Events in 10 organizations, 3 ticket types each.
INSERT INTO analytics_service.event_meta (event_id, organization_id, title, starts_at, status,
                                          updated_at)
SELECT 'ev-' || e, 'org-' || (e % 10), 'Event ' || e, '2026-12-31T19:00:00Z', 'published', now()
FROM generate_series(1, $1::int) e;

-- Raw domain events: registrations and payments spread over 90 days (monthly partitions).
INSERT INTO analytics_service.domain_events (message_id, type, producer, occurred_at,
    correlation_id, event_id, organization_id, user_id, data)
SELECT gen_random_uuid(),
       (ARRAY['registration.created','payment.completed','checkin.completed',
              'reservation.expired'])[1 + (i % 4)],
       'event', $3::timestamptz + (i % (90 * 24 * 60)) * interval '1 minute', 'bench',
       'ev-' || (1 + i % $1::int), 'org-' || ((1 + i % $1::int) % 10), 'u-' || (i % 50000),
       jsonb_build_object('registration_id', 'r-' || (i / 4), 'ticket_type_id',
                          'tt-' || (i % 3), 'quantity', 1 + i % 3, 'amount', 1000,
                          'currency', 'RUB')
FROM generate_series(1, $2::bigint / 2) i;

-- Raw tracked views, the other half.
INSERT INTO analytics_service.track_events (ts, type, event_id, visitor, is_unique, path)
SELECT $3::timestamptz + (i % (90 * 24 * 60)) * interval '1 minute',
       CASE WHEN i % 5 = 0 THEN 'ticket_view' ELSE 'page_view' END,
       'ev-' || (1 + i % $1::int), md5((i % 200000)::text), i % 3 = 0, '/events'
FROM generate_series(1, $2::bigint - $2::bigint / 2) i;

-- The rollups these rows make (a bulk backfill, as the consumer would have kept them).
INSERT INTO analytics_service.rollup_hourly (event_id, ticket_type_id, hour, reservations,
    confirmations, checkins, expiries)
SELECT event_id, data->>'ticket_type_id', date_trunc('hour', occurred_at),
       coalesce(sum((data->>'quantity')::int) FILTER (WHERE type = 'registration.created'), 0),
       coalesce(sum((data->>'quantity')::int) FILTER (WHERE type = 'payment.completed'), 0),
       coalesce(sum((data->>'quantity')::int) FILTER (WHERE type = 'checkin.completed'), 0),
       coalesce(sum((data->>'quantity')::int) FILTER (WHERE type = 'reservation.expired'), 0)
FROM analytics_service.domain_events GROUP BY 1, 2, 3;
INSERT INTO analytics_service.rollup_hourly (event_id, ticket_type_id, hour, page_views,
    unique_visitors, ticket_views)
SELECT event_id, '', date_trunc('hour', ts), count(*) FILTER (WHERE type = 'page_view'),
       count(*) FILTER (WHERE type = 'page_view' AND is_unique),
       count(*) FILTER (WHERE type = 'ticket_view')
FROM analytics_service.track_events GROUP BY 1, 2, 3;
INSERT INTO analytics_service.revenue_hourly (event_id, ticket_type_id, hour, currency, gross)
SELECT event_id, data->>'ticket_type_id', date_trunc('hour', occurred_at), 'RUB',
       sum((data->>'amount')::int)
FROM analytics_service.domain_events WHERE type = 'payment.completed' GROUP BY 1, 2, 3;
INSERT INTO analytics_service.rollup_daily (event_id, ticket_type_id, day, __COLS__)
SELECT event_id, ticket_type_id, date_trunc('day', hour, 'UTC'), __SUMS__
FROM analytics_service.rollup_hourly GROUP BY 1, 2, 3;
INSERT INTO analytics_service.revenue_daily (event_id, ticket_type_id, day, currency, gross,
    refunded)
SELECT event_id, ticket_type_id, date_trunc('day', hour, 'UTC'), currency, sum(gross),
       sum(refunded)
FROM analytics_service.revenue_hourly GROUP BY 1, 2, 3, 4;
ANALYZE analytics_service.rollup_hourly;
ANALYZE analytics_service.rollup_daily;
ANALYZE analytics_service.revenue_hourly;
"""
GENERATE = GENERATE.replace("__COLS__", ", ".join(COUNTERS)).replace(
    "__SUMS__", ", ".join(f"sum({c})" for c in COUNTERS))


async def generate(url: str, rows: int, events: int, start: datetime) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        t0 = time.perf_counter()
        for statement in [s for s in GENERATE.split(";\n") if s.strip()]:
            args = [a for i, a in enumerate((events, rows, start), 1) if f"${i}" in statement]
            await conn.execute(statement, *args)
        took = time.perf_counter() - t0
        raw = await conn.fetchval(
            "SELECT (SELECT count(*) FROM analytics_service.domain_events) + "
            "(SELECT count(*) FROM analytics_service.track_events)")
        rollups = await conn.fetchval("SELECT count(*) FROM analytics_service.rollup_hourly")
        parts = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname IN ('domain_events', 'track_events')")
    finally:
        await conn.close()
    return {"raw_rows": raw, "rollup_rows": rollups, "partitions": parts,
            "generate_s": round(took, 1)}


async def measure(settings: Settings, args: argparse.Namespace, start: datetime,
                  end: datetime) -> dict[str, Any]:
    engine = create_engine(settings, "analytics", pool_size=5)
    sessions = sessionmaker(engine)
    out: dict[str, Any] = {}
    rng = service.Range(start, end)
    try:
        times = []
        for _ in range(args.dashboards):
            ev = f"ev-{random.randint(1, args.events)}"
            t0 = time.perf_counter()
            async with sessions() as session:
                await service.dashboard(session, ev, rng, "day", None, {})
            times.append((time.perf_counter() - t0) * 1000)
        out["dashboard_p50_ms"] = round(statistics.median(times), 2)
        out["dashboard_p95_ms"] = round(percentile(times, 0.95), 2)
        sql_times = []
        for _ in range(args.dashboards):
            ev = f"ev-{random.randint(1, args.events)}"
            t0 = time.perf_counter()
            async with sessions() as session:
                await service.rollup_rows(session, [ev], rng, "day")
            sql_times.append((time.perf_counter() - t0) * 1000)
        out["dashboard_sql_p50_ms"] = round(statistics.median(sql_times), 2)
        async with sessions() as session:
            plan = await session.execute(text(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT ticket_type_id, "
                "date_trunc('day', hour, 'UTC'), sum(reservations) FROM rollup_hourly "
                "WHERE event_id = 'ev-1' AND hour >= :s AND hour < :e GROUP BY 1, 2"),
                {"s": start, "e": end})
            print("\n".join(r[0] for r in plan), file=sys.stderr)
        times = []
        for k in range(10):
            t0 = time.perf_counter()
            async with sessions() as session:
                await service.report(session, f"org-{k}", rng)
            times.append((time.perf_counter() - t0) * 1000)
        out["report_events"] = args.events // 10
        out["report_p50_ms"] = round(statistics.median(times), 1)
        out["report_max_ms"] = round(max(times), 1)

        # Domain events through the production consumer, batches of 200.
        consumer = ConsumerRuntime("analytics", sessions, {
            t: record_domain_event for t in ("registration.created", "payment.completed",
                                              "checkin.completed")})
        now = datetime.now(UTC)
        envelopes = []
        for i in range(args.ingest_messages // 2):
            reg = str(uuid.uuid4())
            ev = f"ev-{random.randint(1, args.events)}"
            envelopes.append(Envelope(type="registration.created", producer="event",
                                      correlation_id="bench", occurred_at=now, data={
                "registration_id": reg, "event_id": ev, "organization_id": "org-1",
                "ticket_type_id": f"tt-{i % 3}", "user_id": "u", "quantity": 1,
                "status": "pending_payment", "amount": 1000, "currency": "RUB",
                "payment_mode": "full"}))
            envelopes.append(Envelope(type="payment.completed", producer="payment",
                                      correlation_id="bench", occurred_at=now, data={
                "payment_id": str(uuid.uuid4()), "registration_id": reg, "event_id": ev,
                "user_id": "u", "kind": "full", "amount": 1000, "currency": "RUB"}))
        lags = []
        t0 = time.perf_counter()
        for k in range(0, len(envelopes), 200):
            b0 = time.perf_counter()
            await consumer.process_batch(envelopes[k:k + 200])
            lags.append((time.perf_counter() - b0) * 1000)
        took = time.perf_counter() - t0
        out["ingest_domain_events_per_s"] = round(len(envelopes) / took)
        out["rollup_lag_batch_p50_ms"] = round(statistics.median(lags), 1)
        out["rollup_lag_batch_p95_ms"] = round(percentile(lags, 0.95), 1)

        # /track items through the use case (validation, salt, hash, uniques, raw, rollups).
        t0 = time.perf_counter()
        items = 0
        for b in range(args.track_batches):
            batch = [{"type": "page_view", "event_id": str(uuid.UUID(int=random.randint(
                1, args.events))), "path": "/e"} for _ in range(50)]
            async with UnitOfWork(sessions, "analytics") as uow:
                await service.track(uow, batch, f"10.0.{b % 250}.{b % 7}", UA,
                                    datetime.now(UTC))
            items += len(batch)
        out["ingest_track_items_per_s"] = round(items / (time.perf_counter() - t0))
    finally:
        await engine.dispose()
    return out


async def admin_sql(sql: str) -> None:
    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(UTC)
    start = (now - timedelta(days=90)).replace(minute=0, second=0, microsecond=0)
    # The monthly partitions the sweep keeps, for every month of the generated range.
    engine = create_engine(settings, "analytics", pool_size=1)
    async with sessionmaker(engine)() as session, session.begin():
        for k in range(5):
            month = (start.replace(day=1) + timedelta(days=31 * k)).date()
            await service.ensure_partitions(session, "analytics_service", month, 0)
    await engine.dispose()
    result = {"rows": args.rows, "events": args.events,
              **await generate(url, args.rows, args.events, start)}
    result.update(await measure(settings, args, start, now + timedelta(hours=1)))
    return result


def main(args: argparse.Namespace) -> dict[str, Any]:
    name = f"afisha_bench_analytics_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    url = with_database(PG, name)
    try:
        settings = Settings.model_validate({"database_url": url})
        migrate.upgrade(settings)
        return asyncio.run(run(settings, url, args))
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--dashboards", type=int, default=200)
    parser.add_argument("--ingest-messages", type=int, default=20_000)
    parser.add_argument("--track-batches", type=int, default=400)
    result = main(parser.parse_args())
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "analytics_scale.json").write_text(json.dumps(result, indent=2))
    print(" ".join(f"{k}={v}" for k, v in result.items()))
