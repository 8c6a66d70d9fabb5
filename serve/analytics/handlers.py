"""Analytics' consumer effect: every consumed domain event becomes one time-series row, and
the registration facts and hourly rollups move by what it changed, in the same transaction as
the batch's inbox rows (``messaging.consumer``: one commit, or nothing of the batch).

See ``serve.analytics.domain`` for why the rollups cannot double-count: a duplicate changes no
fact, events in any order reach the same facts, and a retried batch was rolled back whole.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from messaging.consumer import BatchHandler
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.analytics import domain
from storage import bulk
from storage.analytics import (
    domain_events,
    event_meta,
    registration_facts,
    revenue_daily,
    revenue_hourly,
    rollup_daily,
    rollup_hourly,
    waitlist_joins,
)

REGISTRATION_TYPES = frozenset({
    "registration.created", "registration.cancelled", "reservation.expired",
    "checkin.completed", "payment.completed", "payment.refunded"})
EVENT_TYPES = frozenset({"event.created", "event.published", "event.unpublished",
                         "event.cancelled", "event.completed"})
_FACT_COLUMNS = ("event_id", "organization_id", "ticket_type_id", "quantity", "reserved_at",
                 "confirmed_at", "cancelled_at", "expired_at", "checked_in_at", "waitlist_offer")


def _key(value: Any) -> str:
    """Ids as every producer spells them alike (UUIDs in lower case)."""
    return str(value).strip().lower()


def facts_of(row: Any) -> domain.Facts:
    money = {m["key"]: domain.Money(m["key"], m["kind"], int(m["amount"]), m["currency"],
                                    datetime.fromisoformat(m["at"])) for m in row["money"]}
    return domain.Facts(registration_id=row["registration_id"], money=money,
                        **{c: row[c] for c in _FACT_COLUMNS})


def row_of(facts: domain.Facts) -> dict[str, Any]:
    return {"registration_id": facts.registration_id,
            **{c: getattr(facts, c) for c in _FACT_COLUMNS},
            "money": [{"key": m.key, "kind": m.kind, "amount": m.amount,
                       "currency": m.currency, "at": m.at.isoformat()}
                      for m in sorted(facts.money.values(), key=lambda m: m.key)]}


# A batch's rows of a table go in one statement over arrays (``storage.bulk``).
async def _add(uow: UnitOfWork, table: Table, keys: tuple[str, ...], sums: tuple[str, ...],
               rows: list[dict[str, Any]]) -> None:
    """Insert the rows, or add their ``sums`` to the row already there."""
    added = ", ".join(f"{n} = t.{n} + excluded.{n}" for n in sums)
    stmt = bulk.insert(table, keys + sums, f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {added}")
    await uow.session.execute(stmt, bulk.params(table, keys + sums, rows))


FACTS = ("registration_id", *_FACT_COLUMNS, "money")
RAW = ("message_id", "type", "producer", "occurred_at", "correlation_id", "event_id",
       "organization_id", "user_id", "data")


@functools.cache
def _upsert_meta() -> Any:
    """The latest message about an event wins whatever the arrival order."""
    stmt = pg_insert(event_meta)
    return stmt.on_conflict_do_update(
        index_elements=["event_id"],
        set_={c: stmt.excluded[c] for c in ("organization_id", "title", "starts_at", "status",
                                             "updated_at")},
        where=event_meta.c.updated_at <= stmt.excluded.updated_at)


async def apply_delta(uow: UnitOfWork, delta: domain.Delta) -> None:
    """Add a delta to the hourly and daily rollups (rows in key order, so concurrent batches
    cannot deadlock)."""
    for counters, column, grain in ((rollup_hourly, "hour", domain.hour_of),
                                    (rollup_daily, "day", domain.day_of)):
        merged: dict[tuple[str, str, Any], dict[str, int]] = {}
        for (ev, tt, hour), v in delta.counters.items():
            row = merged.setdefault((ev, tt, grain(hour)), dict.fromkeys(domain.COUNTERS, 0))
            for n in domain.COUNTERS:
                row[n] += int(v.get(n, 0))
        if merged:
            await _add(uow, counters, ("event_id", column, "ticket_type_id"), domain.COUNTERS, [
                {"event_id": ev, "ticket_type_id": tt, column: at, **v}
                for (ev, tt, at), v in sorted(merged.items())])
    for revenue, column, grain in ((revenue_hourly, "hour", domain.hour_of),
                                   (revenue_daily, "day", domain.day_of)):
        money: dict[tuple[str, str, Any, str], list[int]] = {}
        for (ev, tt, hour, cur), mv in delta.money.items():
            sums = money.setdefault((ev, tt, grain(hour), cur), [0, 0])
            sums[0] += int(mv.get("gross", 0))
            sums[1] += int(mv.get("refunded", 0))
        if money:
            await _add(uow, revenue, ("event_id", column, "ticket_type_id", "currency"),
                       ("gross", "refunded"), [
                           {"event_id": ev, "ticket_type_id": tt, column: at, "currency": cur,
                            "gross": g, "refunded": r}
                           for (ev, tt, at, cur), (g, r) in sorted(money.items())])


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


async def _record_raw(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    await uow.session.execute(bulk.insert(domain_events, RAW), bulk.params(domain_events, RAW, [{
        "message_id": e.id, "type": e.type, "producer": e.producer,
        "occurred_at": e.occurred_at, "correlation_id": e.correlation_id,
        "event_id": _text_or_none(e.data.get("event_id")),
        "organization_id": _text_or_none(e.data.get("organization_id")),
        "user_id": _text_or_none(e.data.get("user_id") or e.data.get("requester_id")
                                 or e.data.get("owner_id")),
        "data": e.data} for e in envelopes]))


async def _record_events(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    latest: dict[str, Envelope] = {}
    for e in envelopes:
        key = _key(e.data["event_id"])
        if key not in latest or e.occurred_at >= latest[key].occurred_at:
            latest[key] = e
    if not latest:
        return
    status = {"event.created": "draft", "event.published": "published",
              "event.unpublished": "draft", "event.cancelled": "cancelled",
              "event.completed": "completed"}
    await uow.session.execute(_upsert_meta(), [{
        "event_id": k, "organization_id": _key(e.data["organization_id"]),
        "title": str(e.data["title"]), "starts_at": e.data.get("starts_at"),
        "status": status[e.type], "updated_at": e.occurred_at}
        for k, e in sorted(latest.items())])


async def _apply_registrations(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    ids = sorted({_key(e.data["registration_id"]) for e in envelopes})
    session = uow.session
    await session.execute(bulk.insert(registration_facts, ("registration_id",),
                                      "ON CONFLICT DO NOTHING"), {"registration_id": ids})
    rows = (await session.execute(
        select(registration_facts).where(registration_facts.c.registration_id.in_(ids))
        .order_by(registration_facts.c.registration_id).with_for_update())).mappings().all()
    before = {r["registration_id"]: facts_of(r) for r in rows}
    after = {k: f.copy() for k, f in before.items()}
    for e in envelopes:
        domain.merge(after[_key(e.data["registration_id"])], e.type, e.occurred_at, e.data)
    total = domain.Delta()
    changed = []
    for k in ids:
        if after[k] != before[k]:
            changed.append(row_of(after[k]))
            total.add(domain.change(before[k], after[k]))
    if changed:
        await session.execute(bulk.update(registration_facts, "registration_id", FACTS[1:]),
                              bulk.params(registration_facts, FACTS, changed))
    await apply_delta(uow, total.nonzero())


async def _apply_waitlist_joins(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    """One ``waitlist_joins`` count per entry, in the hour it joined: an entry already
    recorded (the same join published again) adds nothing."""
    rows = {_key(e.data["entry_id"]): {
        "entry_id": _key(e.data["entry_id"]), "event_id": _key(e.data["event_id"]),
        "ticket_type_id": _key(e.data["ticket_type_id"]),
        "joined_at": domain.parse_ts(e.data.get("joined_at")) or e.occurred_at}
        for e in envelopes}
    new = (await uow.session.execute(
        pg_insert(waitlist_joins).on_conflict_do_nothing().returning(
            waitlist_joins.c.event_id, waitlist_joins.c.ticket_type_id,
            waitlist_joins.c.joined_at), [rows[k] for k in sorted(rows)])).all()
    delta = domain.Delta()
    for event_id, ticket_type_id, joined_at in new:
        delta.counters[(event_id, ticket_type_id, domain.hour_of(joined_at))][
            "waitlist_joins"] += 1
    await apply_delta(uow, delta.nonzero())


async def record_domain_events(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    await _record_raw(uow, envelopes)
    await _record_events(uow, [e for e in envelopes if e.type in EVENT_TYPES])
    joins = [e for e in envelopes if e.type == "waitlist.joined" and e.data.get("entry_id")]
    if joins:
        await _apply_waitlist_joins(uow, joins)
    registrations = [e for e in envelopes
                     if e.type in REGISTRATION_TYPES and e.data.get("registration_id")]
    if registrations:
        await _apply_registrations(uow, registrations)


# A batch of them is applied together: facts, rollups and raw rows do not depend on order.
record_domain_event = BatchHandler(record_domain_events)
