"""Analytics on the real PostgreSQL through the gateway: a seeded history gives exactly its
known figures in the dashboard, the report and the export; duplicates, reordering and a retried
batch change nothing; tracking validates, hashes and drops robots; other organizations' people
get 403 everywhere; an export of 100,000 rows is streamed in bounded memory."""

from __future__ import annotations

import csv
import io
import random
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, text

from cluster.settings import Settings
from messaging.outbox import UnitOfWork
from serve.analytics import export_jobs, service
from storage.analytics import (
    domain_events,
    registration_facts,
    rollup_hourly,
    track_events,
    visitor_salts,
)
from tests.integration.analytics_support import (
    BROWSER,
    BROWSER_B,
    BROWSER_C,
    EXPECTED_REVENUE,
    EXPECTED_TOTALS,
    GOOGLEBOT,
    History,
    Platform,
    days,
    envelope,
    organization,
    start_platform,
)
from tests.integration.users_support import register, user_settings


@pytest.fixture
async def platform(migrated_settings: Settings) -> AsyncIterator[Platform]:
    settings = user_settings(migrated_settings, None, rate_limit_track_per_minute=0)
    p = await start_platform(settings)
    p.tokens["owner"] = await register(p.users)
    p.tokens["stranger"] = await register(p.users)
    p.tokens["other_owner"] = await register(p.users)
    admin = p.identity("admin")
    p.tokens["org"] = p.tokens["owner"]
    org = await organization(p.users, p.tokens["owner"], admin)
    other = await organization(p.users, p.tokens["other_owner"], admin)
    p.org, p.other_org = org, other  # type: ignore[attr-defined]
    try:
        yield p
    finally:
        await p.http.aclose()
        await p.analytics.close()
        await p.users.close()


def new_history(p: Platform) -> History:
    d1, d2 = days()
    h = History(event_id=str(uuid.uuid4()), organization_id=p.org,  # type: ignore[attr-defined]
                day1=d1, day2=d2)
    h.build()
    return h


def window(h: History) -> dict[str, str]:
    return {"from": (h.day1 - timedelta(days=1)).isoformat(),
            "to": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}


async def dashboard(p: Platform, h: History, interval: str = "day",
                    who: str = "owner") -> dict[str, Any]:
    r = await p.http.get(f"/api/v1/analytics/events/{h.event_id}/dashboard",
                         params={**window(h), "interval": interval}, headers=p.headers(who))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def assert_sale_figures(d: dict[str, Any], h: History) -> None:
    t = d["totals"]
    for key, value in EXPECTED_TOTALS.items():
        assert t[key] == value, (key, t[key], value)
    assert t["revenue"] == EXPECTED_REVENUE
    assert d["attendance_rate"] == 0.75
    steps = {s["step"]: s for s in d["funnel"]}
    assert [s["step"] for s in d["funnel"]] == ["viewed", "reserved", "confirmed", "checked_in"]
    assert steps["reserved"]["count"] == 9
    assert steps["confirmed"] == {"step": "confirmed", "count": 4, "conversion": round(4 / 9, 4)}
    assert steps["checked_in"] == {"step": "checked_in", "count": 3, "conversion": 0.75}
    by_tt = {t["ticket_type_id"]: t for t in d["by_ticket_type"]}
    paid, free = by_tt[h.tt_paid], by_tt[h.tt_free]
    assert (paid["reservations"], paid["confirmed"], paid["cancelled"], paid["expired"],
            paid["checked_in"]) == (8, 3, 1, 4, 2)
    assert paid["revenue"] == EXPECTED_REVENUE
    assert (free["reservations"], free["confirmed"], free["checked_in"]) == (1, 1, 1)
    assert free["revenue"] == []
    by_day = {r["day"]: r["revenue"] for r in d["revenue_by_day"]}
    assert by_day[h.day1.date().isoformat()] == [
        {"currency": "RUB", "gross": 4000, "refunded": 0, "net": 4000}]
    assert by_day[h.day2.date().isoformat()] == [
        {"currency": "RUB", "gross": 0, "refunded": 1400, "net": -1400}]


async def track(p: Platform, items: list[dict[str, Any]], ua: str,
                ip: str | None = None) -> Any:
    headers = {"User-Agent": ua}
    if ip:
        headers["X-Test-IP"] = ip
    return await p.http.post("/api/v1/analytics/track", json={"items": items}, headers=headers)


async def test_seeded_history_gives_its_known_figures(platform: Platform) -> None:
    p = platform
    h = new_history(p)
    await p.consumer.deliver(h.envelopes)
    now = datetime.now(UTC)
    t1 = now - timedelta(hours=26)
    if t1.hour >= 21:  # A's views (t1 to t1 + 2 h 10 min) stay in one UTC day: a visitor's id
        t1 = t1.replace(hour=20, minute=0)  # comes from a salt of the day, so it changes at 0:00
    ev = h.event_id

    def view(at: datetime, kind: str = "page_view") -> dict[str, Any]:
        return {"type": kind, "event_id": ev, "path": f"/events/{ev}", "ts": at.isoformat(),
                "referrer": "https://t.me/", "utm_source": "telegram"}

    # Visitor A: a view, a repeat 10 minutes later (not unique), another 2 hours later
    # (unique again), and a ticket view; B once; C the next day; a robot three times.
    r = await track(p, [view(t1), view(t1 + timedelta(minutes=10)),
                        view(t1 + timedelta(minutes=1), "ticket_view"),
                        view(t1 + timedelta(hours=2))], BROWSER)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 4, "dropped": 0}
    assert (await track(p, [view(t1 + timedelta(minutes=5))], BROWSER_B)).status_code == 202
    assert (await track(p, [view(now - timedelta(hours=1))], BROWSER_C)).status_code == 202
    bot = await track(p, [view(t1)] * 3, GOOGLEBOT)
    assert bot.json() == {"accepted": 0, "dropped": 3}

    d = await dashboard(p, h)
    assert_sale_figures(d, h)
    assert d["totals"]["page_views"] == 5
    assert d["totals"]["unique_visitors"] == 4
    assert d["totals"]["ticket_views"] == 1
    assert d["totals"]["seats_left"] is None  # the event service is not running here
    assert d["funnel"][0] == {"step": "viewed", "count": 4, "conversion": None}
    assert d["funnel"][1]["conversion"] == round(9 / 4, 4)
    series = {s["ts"][:10]: s for s in d["series"]}
    day1 = series[h.day1.date().isoformat()]
    assert (day1["reservations"], day1["confirmed"]) == (7, 4)
    assert day1["revenue_net"] == [{"currency": "RUB", "net": 4000}]
    day2 = series[h.day2.date().isoformat()]
    assert (day2["reservations"], day2["confirmed"], day2["checked_in"]) == (2, 0, 3)
    assert sum(s["page_views"] for s in d["series"]) == 5

    hourly = await dashboard(p, h, "hour")
    assert hourly["totals"] == d["totals"]
    assert sum(s["reservations"] for s in hourly["series"]) == 9
    assert all(s["ts"].endswith(":00:00+00:00") for s in hourly["series"])

    # The organization report: one row per event plus totals (a second, empty event).
    empty = envelope("event.created", h.day1, event_id=str(uuid.uuid4()),
                     organization_id=p.org, title="Quiet", starts_at=h.day2.isoformat())  # type: ignore[attr-defined]
    await p.consumer.deliver([empty])
    r = await p.http.get(f"/api/v1/analytics/organizations/{p.org}/report",  # type: ignore[attr-defined]
                         params=window(h), headers=p.headers("owner"))
    assert r.status_code == 200, r.text
    report = r.json()
    rows = {row["event_id"]: row for row in report["events"]}
    assert set(rows) >= {ev, empty.data["event_id"]}
    mine = rows[ev]
    assert (mine["reservations"], mine["confirmed"], mine["cancelled"], mine["expired"],
            mine["checked_in"], mine["page_views"], mine["unique_visitors"]) == (
        9, 4, 1, 4, 3, 5, 4)
    assert mine["revenue"] == EXPECTED_REVENUE
    assert mine["attendance_rate"] == 0.75
    assert rows[empty.data["event_id"]]["reservations"] == 0
    assert report["totals"]["confirmed"] == sum(r["confirmed"] for r in report["events"])

    # Raw IP never stored; the robot left nothing.
    async with p.analytics.sessions() as session:
        stored = (await session.execute(select(track_events).where(
            track_events.c.event_id == ev))).mappings().all()
    assert len(stored) == 6
    assert all("203.0.113.7" not in str(dict(row).values()) for row in stored)
    assert sum(row["is_unique"] for row in stored if row["type"] == "page_view") == 4


async def test_duplicates_and_any_order_change_nothing(platform: Platform) -> None:
    p = platform
    h = new_history(p)
    shuffled = list(h.envelopes)
    random.Random(13).shuffle(shuffled)
    for e in shuffled:  # one at a time, each delivered twice
        await p.consumer.deliver([e])
        await p.consumer.deliver([e])
    await p.consumer.deliver(list(reversed(h.envelopes)))  # the whole history redelivered
    assert_sale_figures(await dashboard(p, h), h)
    # A second copy of a capture under a new message id (the provider's retry) is the same
    # payment: counted once.
    again = next(e for e in h.envelopes if e.type == "payment.completed")
    await p.consumer.deliver([envelope(again.type, again.occurred_at, **again.data)])
    assert_sale_figures(await dashboard(p, h), h)
    async with p.analytics.sessions() as session:
        raw = await session.scalar(select(func.count()).select_from(domain_events).where(
            domain_events.c.event_id == h.event_id))
    assert raw == len(h.envelopes) + 1  # one raw row per distinct message


async def test_a_retried_batch_does_not_double_count(platform: Platform) -> None:
    p = platform
    h = new_history(p)
    poison = envelope("registration.created", h.day1, registration_id=str(uuid.uuid4()),
                      event_id=h.event_id)  # no ticket type: the handler fails on it
    batch = [*h.envelopes[:9], poison, *h.envelopes[9:]]
    await p.consumer.deliver(batch)  # the batch fails whole, then applies one by one
    await p.consumer.deliver(batch)  # and is redelivered
    assert_sale_figures(await dashboard(p, h), h)
    async with p.analytics.sessions() as session:
        dead = await session.scalar(text(
            "SELECT count(*) FROM dead_letter WHERE message_id = :m"), {"m": poison.id})
        facts = await session.scalar(select(func.count()).select_from(registration_facts)
                                     .where(registration_facts.c.event_id == h.event_id))
    assert dead >= 1  # the poison is dead-lettered (again on the redelivery); nothing else
    assert facts == 6


async def test_tracking_validates_the_whole_batch(platform: Platform) -> None:
    p = platform
    ev = str(uuid.uuid4())
    good = {"type": "page_view", "event_id": ev, "path": "/e"}
    r = await track(p, [good, good, {"type": "ticket_view", "path": "/e"}], BROWSER)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["item"] == 2 and "items[2]" in problem["detail"]
    for bad in ({"type": "click", "path": "/"}, {"type": "page_view"},
                {"type": "page_view", "path": "/", "ts": "2001-01-01T00:00:00Z"},
                {"type": "page_view", "path": "/", "event_id": "not-a-uuid"},
                {"type": "page_view", "path": "/", "ip": "1.2.3.4"}):
        r = await track(p, [good, bad], BROWSER)
        assert r.status_code == 422, bad
        assert r.json()["item"] == 1
    r = await track(p, [good] * 51, BROWSER)
    assert r.status_code == 422
    async with p.analytics.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(track_events).where(
            track_events.c.event_id == ev)) == 0
        assert await session.scalar(select(func.count()).select_from(rollup_hourly).where(
            rollup_hourly.c.event_id == ev)) == 0
    # No User-Agent at all is not a browser.
    r = await p.http.post("/api/v1/analytics/track", json={"items": [good]},
                          headers={"User-Agent": ""})
    assert r.json() == {"accepted": 0, "dropped": 1}


async def test_the_visitor_salt_rotates_daily(platform: Platform) -> None:
    p = platform
    now = datetime.now(UTC)
    async with UnitOfWork(p.analytics.sessions, "analytics") as uow:
        a = await service.salt_for(uow.session, now.date())
        b = await service.salt_for(uow.session, now.date())
        c = await service.salt_for(uow.session, (now - timedelta(days=1)).date())
    assert a == b and a != c
    async with p.analytics.sessions() as session, session.begin():
        await session.execute(visitor_salts.insert().values(
            day=now - timedelta(days=5), salt=b"x" * 32))
        await service.forget_old_salts(session, now)
        days_left = [r[0] for r in await session.execute(select(visitor_salts.c.day))]
    assert all(d >= now - timedelta(hours=48) for d in days_left)


async def test_other_organizations_get_403_on_every_endpoint(platform: Platform) -> None:
    p = platform
    h = new_history(p)
    await p.consumer.deliver(h.envelopes)
    org = p.org  # type: ignore[attr-defined]
    link = await p.http.get(f"/api/v1/analytics/events/{h.event_id}/dashboard/link",
                            headers=p.headers("owner"))
    assert link.status_code == 200
    started = await p.http.post("/api/v1/analytics/export", headers=p.headers("owner"), json={
        "scope": "event", "id": h.event_id, "format": "csv", **window(h)})
    assert started.status_code == 202, started.text
    export_id = started.json()["id"]
    calls = [
        ("GET", f"/api/v1/analytics/events/{h.event_id}/dashboard", None),
        ("GET", f"/api/v1/analytics/events/{h.event_id}/dashboard/link", None),
        ("GET", f"/api/v1/analytics/organizations/{org}/report", None),
        ("POST", "/api/v1/analytics/export",
         {"scope": "event", "id": h.event_id, "format": "csv"}),
        ("POST", "/api/v1/analytics/export", {"scope": "organization", "id": org,
                                              "format": "xlsx"}),
        ("GET", f"/api/v1/analytics/exports/{export_id}", None),
    ]
    for who in ("other_owner", "stranger"):
        for method, path, body in calls:
            r = await p.http.request(method, path, json=body, headers=p.headers(who))
            assert r.status_code == 403, (who, path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
    for method, path, body in calls:
        r = await p.http.request(method, path, json=body)
        assert r.status_code == 401, path
    for method, path, body in calls:  # admins see everything
        r = await p.http.request(method, path, json=body, headers=p.headers("admin"))
        assert r.status_code in (200, 202), (path, r.text)
    # The other organization's own report is its own (and empty of this event).
    r = await p.http.get(f"/api/v1/analytics/organizations/{p.other_org}/report",  # type: ignore[attr-defined]
                         headers=p.headers("other_owner"))
    assert r.status_code == 200 and r.json()["events"] == []
    # A signed link with another event id, or expired, is refused.
    url = link.json()["url"].split("/api/v1", 1)[1]
    forged = url.replace(h.event_id, str(uuid.uuid4()))
    assert (await p.http.get("/api/v1" + forged)).status_code == 403
    assert (await p.http.get("/api/v1" + url)).status_code == 200


async def wait_export(p: Platform, export_id: str, who: str = "owner") -> dict[str, Any]:
    import asyncio

    for _ in range(600):
        r = await p.http.get(f"/api/v1/analytics/exports/{export_id}", headers=p.headers(who))
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("done", "failed"):
            body: dict[str, Any] = r.json()
            return body
        await asyncio.sleep(0.1)
    raise AssertionError("export did not finish")


async def download(p: Platform, url: str) -> bytes:
    r = await p.http.get("/api/v1" + url.split("/api/v1", 1)[1])
    assert r.status_code == 200, r.text
    return r.content


async def test_export_gives_the_dashboard_figures_in_csv_and_xlsx(platform: Platform) -> None:
    p = platform
    d1, d2 = days()
    h = History(event_id=str(uuid.uuid4()), organization_id=p.org,  # type: ignore[attr-defined]
                day1=d1, day2=d2)
    h.build(title="=HYPERLINK(\"http://evil\")")
    await p.consumer.deliver(h.envelopes)
    r = await p.http.post("/api/v1/analytics/export", headers=p.headers("owner"), json={
        "scope": "event", "id": h.event_id, "format": "csv", **window(h)})
    job = await wait_export(p, r.json()["id"])
    assert job["status"] == "done", job
    raw = await download(p, job["download_url"])
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert sum(int(r["reservations"]) for r in rows) == 9
    assert sum(int(r["confirmations"]) - int(r["confirmed_cancellations"]) for r in rows) == 4
    assert sum(int(r["checkins"]) for r in rows) == 3
    assert sum(int(r["expiries"]) for r in rows) == 4
    assert sum(int(r["gross"]) for r in rows) == 4000
    assert sum(int(r["refunded"]) for r in rows) == 1400
    assert sum(int(r["net"]) for r in rows) == 2600
    assert {r["event_title"] for r in rows} == {"'=HYPERLINK(\"http://evil\")"}
    assert job["rows_written"] == len(rows)

    r = await p.http.post("/api/v1/analytics/export", headers=p.headers("owner"), json={
        "scope": "organization", "id": p.org, "format": "xlsx", **window(h)})  # type: ignore[attr-defined]
    job = await wait_export(p, r.json()["id"])
    assert job["status"] == "done", job
    book = load_workbook(io.BytesIO(await download(p, job["download_url"])), read_only=True)
    sheet = list(book.active.iter_rows(values_only=True))
    header, body = sheet[0], [dict(zip(sheet[0], row, strict=True)) for row in sheet[1:]]
    assert header[0] == "event_id"
    mine = [r for r in body if r["event_id"] == h.event_id]
    assert sum(int(r["reservations"]) for r in mine) == 9
    assert sum(int(r["net"]) for r in mine) == 2600
    assert {r["event_title"] for r in mine} == {"'=HYPERLINK(\"http://evil\")"}
    # A tampered download link is refused.
    tampered = job["download_url"].replace("signature=", "signature=0")
    assert (await p.http.get("/api/v1" + tampered.split("/api/v1", 1)[1])).status_code == 403


async def test_an_export_of_100000_rows_keeps_memory_bounded(platform: Platform) -> None:
    p = platform
    ev = str(uuid.uuid4())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with p.analytics.sessions() as session, session.begin():
        await session.execute(text(
            "INSERT INTO event_meta (event_id, organization_id, title, status, updated_at) "
            "VALUES (:e, :o, 'Big', 'published', now())"), {"e": ev, "o": p.org})  # type: ignore[attr-defined]
        # 25 ticket types x 4,000 hours = 100,000 rollup rows.
        await session.execute(text(
            "INSERT INTO rollup_hourly (event_id, ticket_type_id, hour, reservations, "
            "confirmations) SELECT :e, 'tt-' || t, "
            "CAST(:s AS timestamptz) + h * interval '1 hour', 1, 1 "
            "FROM generate_series(0, 3999) h, generate_series(1, 25) t"),
            {"e": ev, "s": start})
    async with p.analytics.sessions() as session, session.begin():
        job = await export_jobs.create_export(session, "test", "event", ev, "csv", service.Range(
            start, start + timedelta(hours=4000)))
    tracemalloc.start()
    try:
        await export_jobs.run_export(p.analytics.sessions, job["id"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    async with p.analytics.sessions() as session:
        done = await export_jobs.load_export(session, job["id"])
        chunks = await session.scalar(text(
            "SELECT count(*) FROM export_chunks WHERE export_id = :i"), {"i": job["id"]})
        size = await session.scalar(text(
            "SELECT sum(length(data)) FROM export_chunks WHERE export_id = :i"),
            {"i": job["id"]})
    assert done["status"] == "done"
    assert done["rows_written"] == 100_000
    assert size == done["bytes_written"] > 10 * export_jobs.CHUNK_BYTES  # the file is large ...
    # ... but at most one chunk and one row were ever buffered, and the rows came from the
    # server-side cursor FETCH_ROWS at a time.
    assert done["max_buffered_bytes"] <= export_jobs.CHUNK_BYTES + 1024
    assert chunks >= size // (export_jobs.CHUNK_BYTES + 1024)
    assert peak < size / 2, (peak, size)


async def test_the_sweep_creates_monthly_partitions_ahead_and_moves_early_rows(
        platform: Platform) -> None:
    p = platform
    h = new_history(p)
    await p.consumer.deliver(h.envelopes)  # lands in the default partition (or this month's)
    first = await p.analytics.sweep()
    again = await p.analytics.sweep()
    assert again == []
    async with p.analytics.sessions() as session:
        parts = {r[0]: r[1] for r in await session.execute(text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = 'domain_events'"))}
        month = h.day2.strftime("%Y%m")
        placed = await session.scalar(text(
            "SELECT count(*) FROM domain_events WHERE event_id = :e AND "
            "tableoid::regclass::text LIKE :p"), {"e": h.event_id, "p": f"%_p{month}"})
        in_days = [r[0] for r in await session.execute(text(
            "SELECT DISTINCT to_char(occurred_at, 'YYYYMM') FROM domain_events "
            "WHERE event_id = :e"), {"e": h.event_id})]
    now = datetime.now(UTC)
    expected = {f"domain_events_p{service._month(now.date(), k):%Y%m}" for k in range(3)}
    assert expected <= set(parts)
    assert "domain_events_default" in parts
    assert all(n in parts or n.startswith("track_events_p") for n in first)
    if month in {n[-6:] for n in parts if n.startswith("domain_events_p")}:
        same_month = sum(1 for e in h.envelopes if e.occurred_at.strftime("%Y%m") == month)
        assert placed == same_month and in_days
    # Dashboards are unchanged by where the raw rows live.
    assert_sale_figures(await dashboard(p, h), h)


async def test_tracking_is_rate_limited_per_client(migrated_settings: Settings) -> None:
    settings = user_settings(migrated_settings, None, rate_limit_track_per_minute=2)
    p = await start_platform(settings)
    try:
        item = {"items": [{"type": "page_view", "path": "/"}]}
        codes = [(await p.http.post("/api/v1/analytics/track", json=item,
                                    headers={"User-Agent": BROWSER})).status_code
                 for _ in range(3)]
        assert codes == [202, 202, 429]
    finally:
        await p.http.aclose()
        await p.analytics.close()
        await p.users.close()


async def export_file(p: Platform, export_id: str) -> bytes:
    out = b""
    async with p.analytics.sessions() as session:
        seq = 0
        while (chunk := await export_jobs.read_chunk(session, export_id, seq)) is not None:
            out += chunk
            seq += 1
    return out


async def test_an_export_left_running_by_a_dead_worker_is_taken_over_once(
        platform: Platform) -> None:
    p = platform
    h = new_history(p)
    await p.consumer.deliver(h.envelopes)
    sessions = p.analytics.sessions
    rng = service.Range(h.day1 - timedelta(days=1), datetime.now(UTC) + timedelta(hours=2))
    async with sessions() as session, session.begin():
        reference, lost, alive = [await export_jobs.create_export(
            session, "test", "event", h.event_id, "csv", rng) for _ in range(3)]
    assert await export_jobs.run_export(sessions, reference["id"])
    # The lost worker claimed its job and wrote part of it, then its replica died.
    dead = await export_jobs.claim(sessions, 60, lost["id"])
    assert dead is not None
    async with sessions() as session, session.begin():
        await session.execute(text(
            "INSERT INTO export_chunks (export_id, seq, data) VALUES (:i, 0, 'partial')"),
            {"i": lost["id"]})
        await session.execute(text(
            "UPDATE exports SET heartbeat_at = now() - interval '10 minutes', rows_written = 7 "
            "WHERE id = :i"), {"i": lost["id"]})
    # A job whose worker still beats is left to it.
    assert await export_jobs.claim(sessions, 60, alive["id"]) is not None
    resumed = await export_jobs.resume_stale(sessions, 60)
    assert lost["id"] in resumed and alive["id"] not in resumed
    async with sessions() as session:
        done = await export_jobs.load_export(session, lost["id"])
        first = await export_jobs.load_export(session, reference["id"])
    assert done["status"] == "done" and done["attempts"] == 2
    assert done["rows_written"] == first["rows_written"] > 0
    assert await export_file(p, lost["id"]) == await export_file(p, reference["id"])
    # The dead worker, had it only been slow, can add nothing any more ...
    with pytest.raises(export_jobs.LostClaim):
        async with sessions() as session, session.begin():
            await export_jobs.beat(session, dead)
    await export_jobs.write_export(sessions, dead)
    assert await export_file(p, lost["id"]) == await export_file(p, reference["id"])
    # ... and a later sweep does not write the finished job again.
    assert lost["id"] not in await export_jobs.resume_stale(sessions, 60)
    async with sessions() as session:
        again = await export_jobs.load_export(session, lost["id"])
    assert again["attempts"] == 2 and again["status"] == "done"
