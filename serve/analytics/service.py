"""Analytics use cases: tracking, dashboards and reports from the rollups, partitions, exports."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.outbox import UnitOfWork
from serve.analytics import domain
from serve.analytics.handlers import apply_delta
from serve.common.errors import BadRequest
from storage.analytics import (
    PARTITIONED,
    event_meta,
    revenue_daily,
    revenue_hourly,
    rollup_daily,
    rollup_hourly,
    track_events,
    visitor_marks,
    visitor_salts,
)

SALT_KEEP = timedelta(hours=48)
MARK_KEEP = timedelta(hours=1)
DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)


# --- tracking ----------------------------------------------------------------------------

async def salt_for(session: AsyncSession, day: date) -> bytes:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    await session.execute(pg_insert(visitor_salts).values(
        day=start, salt=os.urandom(32)).on_conflict_do_nothing())
    salt = await session.scalar(select(visitor_salts.c.salt).where(visitor_salts.c.day == start))
    assert salt is not None
    return bytes(salt)


async def track(uow: UnitOfWork, raw_items: Any, ip: str | None, user_agent: str | None,
                now: datetime) -> dict[str, int]:
    """Validate the whole batch first (a bad item: 422, nothing stored), drop robots, then
    store the views and move the rollups in one transaction."""
    items = domain.parse_items(raw_items, now)
    if domain.is_bot(user_agent):
        return {"accepted": 0, "dropped": len(items)}
    session = uow.session
    salts: dict[date, bytes] = {}
    visitors = []
    for item in items:
        day = domain.salt_day(item.ts)
        if day not in salts:
            salts[day] = await salt_for(session, day)
        visitors.append(domain.visitor_id(salts[day], ip or "unknown", user_agent or ""))
    unique = await _uniques(session, items, visitors)
    await session.execute(insert(track_events), [{
        "ts": item.ts, "type": item.type, "event_id": item.event_id, "visitor": v,
        "is_unique": u, "path": item.path, "referrer": item.referrer, "utm": item.utm or None}
        for item, v, u in zip(items, visitors, unique, strict=True)])
    delta = domain.Delta()
    for item, u in zip(items, unique, strict=True):
        if item.event_id is None:
            continue
        key = (item.event_id, domain.NO_TICKET_TYPE, domain.hour_of(item.ts))
        delta.counters[key][item.counter] += 1
        if u and item.type == "page_view":
            delta.counters[key]["unique_visitors"] += 1
    await apply_delta(uow, delta.nonzero())
    return {"accepted": len(items), "dropped": 0}


async def _uniques(session: AsyncSession, items: list[domain.TrackItem],
                   visitors: list[str]) -> list[bool]:
    """Whether each item counts for uniques: no item of the same visitor, event and type
    within 30 minutes of it was seen before. New marks are inserted first (a concurrent
    request waits for ours), existing ones are locked, keys in order."""
    keyed: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for i, (item, v) in enumerate(zip(items, visitors, strict=True)):
        if item.event_id is not None:
            keyed[(v, item.event_id, item.type)].append(i)
    result = [False] * len(items)
    if not keyed:
        return result
    keys = sorted(keyed)
    for idx in keyed.values():
        idx.sort(key=lambda i: items[i].ts)
    inserted = {tuple(r) for r in await session.execute(
        pg_insert(visitor_marks).values([
            {"visitor": k[0], "event_id": k[1], "type": k[2],
             "last_unique_at": items[keyed[k][0]].ts, "last_seen_at": items[keyed[k][0]].ts}
            for k in keys]).on_conflict_do_nothing().returning(
            visitor_marks.c.visitor, visitor_marks.c.event_id, visitor_marks.c.type))}
    old = [k for k in keys if k not in inserted]
    seen: dict[tuple[str, str, str], datetime | None] = dict.fromkeys(keys)
    if old:
        rows = await session.execute(
            select(visitor_marks.c.visitor, visitor_marks.c.event_id, visitor_marks.c.type,
                   visitor_marks.c.last_seen_at)
            .where(func.row(visitor_marks.c.visitor, visitor_marks.c.event_id,
                            visitor_marks.c.type).in_([func.row(*k) for k in old]))
            .order_by(visitor_marks.c.visitor, visitor_marks.c.event_id, visitor_marks.c.type)
            .with_for_update())
        for r in rows:
            seen[(r[0], r[1], r[2])] = r[3]
    updates = []
    for k in keys:
        last = seen[k]
        last_unique = None
        for i in keyed[k]:
            ts = items[i].ts
            if last is None or abs(ts - last) > domain.UNIQUE_WINDOW:
                result[i] = True
                last_unique = ts
            last = ts if last is None else max(last, ts)
        if k in inserted and len(keyed[k]) == 1:
            continue
        updates.append((k, last, last_unique))
    for (v, ev, ty), last, last_unique in updates:
        values: dict[str, Any] = {"last_seen_at": last}
        if last_unique is not None:
            values["last_unique_at"] = func.greatest(visitor_marks.c.last_unique_at, last_unique)
        await session.execute(update(visitor_marks).where(
            visitor_marks.c.visitor == v, visitor_marks.c.event_id == ev,
            visitor_marks.c.type == ty).values(values))
    return result


# --- reading the rollups -----------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def parse_range(start: str | None, end: str | None, now: datetime) -> Range:
    try:
        to = domain.parse_ts(end) or now
        frm = domain.parse_ts(start) or (to - DEFAULT_RANGE)
    except ValueError as exc:
        raise BadRequest(f"from and to are ISO 8601 timestamps: {exc}",
                         slug="invalid-range") from exc
    if frm >= to:
        raise BadRequest("from must be before to", slug="invalid-range")
    if to - frm > MAX_RANGE:
        raise BadRequest("a range is at most 366 days", slug="invalid-range")
    return Range(frm, to)


def _span(rng: Range) -> tuple[datetime, datetime]:
    """The hours of a range: those starting in [from, to)."""
    start = domain.hour_of(rng.start)
    if start < rng.start:
        start += timedelta(hours=1)
    return start, rng.end


async def rollup_rows(session: AsyncSession, event_ids: list[str], rng: Range,
                      grain: str | None = "hour"
                      ) -> tuple[dict[str, list[domain.Row]], dict[str, list[domain.MoneyRow]]]:
    """Rollup rows of hours starting in [from, to), by event, summed in the database per
    ticket type and UTC ``grain`` (``hour``, ``day``, or None: the whole range). Whole days of
    the range are read from the daily tables, the partial days at its ends from the hourly."""
    rows: dict[str, list[domain.Row]] = defaultdict(list)
    money: dict[str, list[domain.MoneyRow]] = defaultdict(list)
    if not event_ids:
        return rows, money
    start, end = _span(rng)
    parts: list[tuple[Any, Any, str, datetime, datetime]] = []
    first_day = domain.day_of(start)
    if first_day < start:
        first_day += timedelta(days=1)
    last_day = domain.day_of(end)
    if grain != "hour" and first_day < last_day:
        parts = [(rollup_hourly, revenue_hourly, "hour", start, first_day),
                 (rollup_daily, revenue_daily, "day", first_day, last_day),
                 (rollup_hourly, revenue_hourly, "hour", last_day, end)]
    else:
        parts = [(rollup_hourly, revenue_hourly, "hour", start, end)]
    for counters, revenue, column, lo, hi in parts:
        if lo >= hi:
            continue
        await _read(session, counters, revenue, column, event_ids, lo, hi, grain, rows, money)
    return rows, money


async def _read(session: AsyncSession, r: Any, m: Any, column: str, event_ids: list[str],
                lo: datetime, hi: datetime, grain: str | None,
                rows: dict[str, list[domain.Row]],
                money: dict[str, list[domain.MoneyRow]]) -> None:
    def bucket(col: Any) -> Any:
        if grain == "hour" or (grain == "day" and column == "day"):
            return col
        if grain == "day":
            return func.date_trunc("day", col, "UTC")
        return func.min(col)

    b = bucket(r.c[column]).label("bucket")
    keys = [r.c.event_id, r.c.ticket_type_id] + ([b] if grain else [])
    result = await session.execute(
        select(r.c.event_id, r.c.ticket_type_id, b,
               *(func.sum(r.c[n]).label(n) for n in domain.COUNTERS))
        .where(r.c.event_id.in_(event_ids), r.c[column] >= lo, r.c[column] < hi)
        .group_by(*keys))
    for row in result.mappings():
        rows[row["event_id"]].append(domain.Row(row["ticket_type_id"], row["bucket"],
                                                {n: int(row[n]) for n in domain.COUNTERS}))
    mb = bucket(m.c[column]).label("bucket")
    keys = [m.c.event_id, m.c.ticket_type_id, m.c.currency] + ([mb] if grain else [])
    result = await session.execute(
        select(m.c.event_id, m.c.ticket_type_id, m.c.currency, mb,
               func.sum(m.c.gross).label("gross"), func.sum(m.c.refunded).label("refunded"))
        .where(m.c.event_id.in_(event_ids), m.c[column] >= lo, m.c[column] < hi)
        .group_by(*keys))
    for row in result.mappings():
        money[row["event_id"]].append(domain.MoneyRow(
            row["ticket_type_id"], row["bucket"], row["currency"], int(row["gross"]),
            int(row["refunded"])))


async def event_organization(session: AsyncSession, event_id: str) -> str | None:
    value = await session.scalar(select(event_meta.c.organization_id).where(
        event_meta.c.event_id == event_id))
    return None if value is None else str(value)


async def event_title(session: AsyncSession, event_id: str) -> str | None:
    value = await session.scalar(select(event_meta.c.title).where(
        event_meta.c.event_id == event_id))
    return None if value is None else str(value)


async def dashboard(session: AsyncSession, event_id: str, rng: Range, interval: str,
                    seats_left: int | None, names: dict[str, str]) -> dict[str, Any]:
    rows, money = await rollup_rows(session, [event_id], rng, interval)
    body = domain.figures(rows[event_id], money[event_id], interval, seats_left, rng.hours, names)
    return {"event_id": event_id, "from": rng.start.isoformat(), "to": rng.end.isoformat(),
            "interval": interval, **body}


async def report(session: AsyncSession, organization_id: str, rng: Range) -> dict[str, Any]:
    events = (await session.execute(
        select(event_meta.c.event_id, event_meta.c.title, event_meta.c.starts_at,
               event_meta.c.status)
        .where(event_meta.c.organization_id == organization_id)
        .order_by(event_meta.c.starts_at, event_meta.c.event_id))).all()
    rows, money = await rollup_rows(session, [e[0] for e in events], rng, None)
    items = []
    for ev_id, title, starts_at, status in events:
        f = domain.figures(rows[ev_id], money[ev_id], "day", None, rng.hours)
        t = f["totals"]
        items.append({"event_id": ev_id, "title": title, "starts_at": starts_at,
                      "status": status, "page_views": t["page_views"],
                      "unique_visitors": t["unique_visitors"],
                      "reservations": t["reservations"], "confirmed": t["confirmed"],
                      "cancelled": t["cancelled"], "expired": t["expired"],
                      "checked_in": t["checked_in"], "attendance_rate": f["attendance_rate"],
                      "revenue": t["revenue"]})
    all_rows = [r for e in events for r in rows[e[0]]]
    all_money = [m for e in events for m in money[e[0]]]
    total = domain.figures(all_rows, all_money, "day", None, rng.hours)
    t = total["totals"]
    return {"organization_id": organization_id, "from": rng.start.isoformat(),
            "to": rng.end.isoformat(), "events": items,
            "totals": {"events": len(items), "page_views": t["page_views"],
                       "unique_visitors": t["unique_visitors"],
                       "reservations": t["reservations"], "confirmed": t["confirmed"],
                       "cancelled": t["cancelled"], "expired": t["expired"],
                       "checked_in": t["checked_in"],
                       "attendance_rate": total["attendance_rate"], "revenue": t["revenue"]}}


# --- partitions --------------------------------------------------------------------------

def _month(d: date, add: int) -> date:
    m = d.month - 1 + add
    return date(d.year + m // 12, m % 12 + 1, 1)


async def ensure_partitions(session: AsyncSession, schema: str, today: date,
                            months_ahead: int = 2) -> list[str]:
    """Monthly partitions of the raw series from this month to ``months_ahead`` later; rows
    that landed in the default partition for such a month move into the new one (in the
    same transaction, under a lock that keeps writers out for that moment)."""
    made = []
    # One sweeper at a time (several replicas may run it).
    await session.execute(text(
        "SELECT pg_advisory_xact_lock(hashtext('afisha-analytics-partitions'))"))
    for table in PARTITIONED:
        column = "occurred_at" if table == "domain_events" else "ts"
        for k in range(months_ahead + 1):
            lo, hi = _month(today, k), _month(today, k + 1)
            name = f"{table}_p{lo:%Y%m}"
            exists = await session.scalar(text(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relname = :t"), {"s": schema, "t": name})
            if exists:
                continue
            q = f'"{schema}"'
            await session.execute(text(f"LOCK TABLE {q}.{table} IN SHARE ROW EXCLUSIVE MODE"))
            await session.execute(text(
                f"CREATE TABLE {q}.{name} (LIKE {q}.{table} INCLUDING DEFAULTS)"))
            await session.execute(text(
                f"WITH moved AS (DELETE FROM {q}.{table}_default WHERE {column} >= :lo AND "
                f"{column} < :hi RETURNING *) INSERT INTO {q}.{name} SELECT * FROM moved"),
                {"lo": datetime(lo.year, lo.month, 1, tzinfo=UTC),
                 "hi": datetime(hi.year, hi.month, 1, tzinfo=UTC)})
            await session.execute(text(
                f"ALTER TABLE {q}.{table} ATTACH PARTITION {q}.{name} "
                f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"))
            made.append(name)
    return made


async def forget_old_salts(session: AsyncSession, now: datetime) -> None:
    """Salts older than 48 hours are deleted (a visitor hash can then never be recomputed);
    marks older than the unique window are no longer needed."""
    await session.execute(delete(visitor_salts).where(visitor_salts.c.day < now - SALT_KEEP))
    await session.execute(delete(visitor_marks).where(
        visitor_marks.c.last_seen_at < now - domain.MAX_AGE - MARK_KEEP))
