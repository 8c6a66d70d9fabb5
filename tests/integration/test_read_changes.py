"""The event service's read changes on the real Postgres: the triggers announce them, a gateway
replica's feed hears them, and its read cache keeps answers until they change."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import httpx
import pytest
from starlette.types import Receive, Scope, Send

from cluster.settings import Settings, schema_of
from messaging.relay import asyncpg_dsn
from serve.gateway.changefeed import APPLICATION, ReadChanges
from serve.gateway.localcache import READS, LocalReadCache
from storage.event import read_changes_channel

SCHEMA = schema_of("event")


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, list[str] | None]] = []
        self.lost = 0

    def changed(self, kind: str, event_ids: list[str] | None) -> None:
        self.changes.append((kind, event_ids))

    def feed_lost(self) -> None:
        self.lost += 1


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition did not come true in time")


@pytest.fixture
async def db(migrated_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(migrated_settings.database_url_for("event")))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def feed(migrated_settings: Settings) -> AsyncIterator[ReadChanges]:
    changes = ReadChanges(asyncpg_dsn(migrated_settings.database_url_for("event")),
                          read_changes_channel(SCHEMA), keepalive_seconds=0.2,
                          retry_seconds=0.1)
    changes.start()
    await until(lambda: changes.listening)
    try:
        yield changes
    finally:
        await changes.close()


async def new_event(db: asyncpg.Connection, title: str = "Concert") -> tuple[str, str]:
    event, ticket_type = str(uuid.uuid4()), str(uuid.uuid4())
    await db.execute(
        f'INSERT INTO "{SCHEMA}".events (id, organization_id, title, starts_at, ends_at, '
        "visibility, participants_visibility, status, created_by) VALUES "
        "($1, 'org', $2, now() + interval '30 days', now() + interval '31 days', 'public', "
        "'organizers', 'published', 'u')", event, title)
    await db.execute(
        f'INSERT INTO "{SCHEMA}".ticket_types (id, event_id, name, price, currency, quantity) '
        "VALUES ($1, $2, 'General', 100000, 'RUB', 10)", ticket_type, event)
    return event, ticket_type


async def reserve(db: asyncpg.Connection, event: str, ticket_type: str) -> str:
    registration = str(uuid.uuid4())
    async with db.transaction():
        await db.execute(
            f'INSERT INTO "{SCHEMA}".registrations (id, event_id, ticket_type_id, user_id, '
            "quantity, status, payment_mode, amount, currency) VALUES "
            "($1, $2, $3, 'buyer', 1, 'pending_payment', 'full', 100000, 'RUB')",
            registration, event, ticket_type)
        await db.execute(
            f'INSERT INTO "{SCHEMA}".reservations (id, registration_id, event_id, '
            "ticket_type_id, user_id, quantity, status, expires_at) VALUES "
            "($1, $2, $3, $4, 'buyer', 1, 'held', now() + interval '10 minutes')",
            str(uuid.uuid4()), registration, event, ticket_type)
    return registration


async def test_each_committed_change_is_announced_once_per_statement_and_kind(
        db: asyncpg.Connection, feed: ReadChanges) -> None:
    recorder = Recorder()
    feed.subscribe(recorder)
    event, ticket_type = await new_event(db)
    await until(lambda: len(recorder.changes) >= 2)
    assert recorder.changes == [("e", [event]), ("e", [event])]

    recorder.changes.clear()
    await reserve(db, event, ticket_type)  # two tables, one transaction: one notification
    await db.execute(f'UPDATE "{SCHEMA}".events SET title = $2 WHERE id = $1', event, "Renamed")
    await until(lambda: len(recorder.changes) >= 2)
    assert recorder.changes == [("s", [event]), ("e", [event])]

    recorder.changes.clear()
    rolled_back = db.transaction()  # nothing is announced of a transaction rolled back
    await rolled_back.start()
    await db.execute(f'UPDATE "{SCHEMA}".events SET title = $2 WHERE id = $1', event, "X")
    await rolled_back.rollback()
    await db.execute(f'UPDATE "{SCHEMA}".ticket_types SET quantity = 12 WHERE id = $1',
                     ticket_type)
    await until(lambda: len(recorder.changes) >= 1)
    await asyncio.sleep(0.1)
    assert recorder.changes == [("e", [event])]


async def test_a_statement_over_many_events_names_each_or_any(
        db: asyncpg.Connection, feed: ReadChanges) -> None:
    recorder = Recorder()
    feed.subscribe(recorder)
    first, _ = await new_event(db)
    second, _ = await new_event(db)
    await until(lambda: len(recorder.changes) >= 4)
    recorder.changes.clear()
    await db.execute(f'UPDATE "{SCHEMA}".events SET venue = $3 WHERE id IN ($1, $2)',
                     first, second, "Hall")
    await until(lambda: len(recorder.changes) >= 1)
    kind, ids = recorder.changes[0]
    assert kind == "e" and sorted(ids or []) == sorted([first, second])
    recorder.changes.clear()
    await db.execute(f'UPDATE "{SCHEMA}".events SET venue = venue')  # every event: too many ids?
    await until(lambda: len(recorder.changes) >= 1)
    kind, ids = recorder.changes[0]
    count = await db.fetchval(f'SELECT count(*) FROM "{SCHEMA}".events')
    assert kind == "e" and (ids is None if count * 37 > 7000 else len(ids or []) == count)


class EventReads:
    """An upstream that answers event reads from Postgres (title, seats held), as the event
    service would, counting its calls."""

    def __init__(self, db: asyncpg.Connection) -> None:
        self.db = db
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        match = READS.match(scope["path"])
        assert match is not None and match["event"]
        if match["types"]:
            value = await self.db.fetchval(
                f'SELECT count(*) FROM "{SCHEMA}".reservations WHERE event_id = $1 '
                "AND status = 'held'", match["event"])
        else:
            value = await self.db.fetchval(
                f'SELECT title FROM "{SCHEMA}".events WHERE id = $1', match["event"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps({"v": value}).encode()})


async def test_the_read_cache_keeps_answers_until_the_database_says_they_changed(
        migrated_settings: Settings, db: asyncpg.Connection, feed: ReadChanges) -> None:
    reads_conn = await asyncpg.connect(asyncpg_dsn(migrated_settings.database_url_for("event")))
    upstream = EventReads(reads_conn)
    cache = LocalReadCache(upstream, ttl=0.3, max_ttl=60, feed=feed)
    event, ticket_type = await new_event(db, "Before")
    await until(lambda: cache.changes >= 2)  # its creation was heard (event, ticket type)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cache),
                                     base_url="http://gw") as http:
            detail, types = f"/api/v1/events/{event}", f"/api/v1/events/{event}/ticket-types"
            assert (await http.get(detail)).json() == {"v": "Before"}
            assert (await http.get(types)).json() == {"v": 0}
            await asyncio.sleep(0.5)  # past the short TTL: kept, as nothing changed
            assert (await http.get(detail)).headers["x-cache"] == "HIT"
            assert (await http.get(types)).headers["x-cache"] == "HIT"
            assert upstream.calls == 2

            await reserve(db, event, ticket_type)  # seats: types kept the short TTL at most
            await until(lambda: cache.changes >= 3)
            assert (await http.get(types)).json() == {"v": 0}
            await asyncio.sleep(0.35)
            assert (await http.get(types)).json() == {"v": 1}
            assert (await http.get(detail)).headers["x-cache"] == "HIT"

            changes = cache.changes
            await db.execute(f'UPDATE "{SCHEMA}".events SET title = $2 WHERE id = $1',
                             event, "After")
            await until(lambda: cache.changes > changes)
            assert (await http.get(detail)).json() == {"v": "After"}  # dropped at once
    finally:
        await reads_conn.close()


async def test_a_lost_feed_shortens_what_was_kept(migrated_settings: Settings,
                                                  db: asyncpg.Connection,
                                                  feed: ReadChanges) -> None:
    reads_conn = await asyncpg.connect(asyncpg_dsn(migrated_settings.database_url_for("event")))
    upstream = EventReads(reads_conn)
    cache = LocalReadCache(upstream, ttl=0.3, max_ttl=60, feed=feed)
    recorder = Recorder()
    feed.subscribe(recorder)
    event, _ = await new_event(db, "Kept")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=cache),
                                     base_url="http://gw") as http:
            await until(lambda: cache.changes >= 2)
            await http.get(f"/api/v1/events/{event}")
            ended = await db.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND datname = current_database()", APPLICATION)
            assert ended == 1
            await until(lambda: recorder.lost > 0)
            await db.execute(f'UPDATE "{SCHEMA}".events SET title = $2 WHERE id = $1',
                             event, "Changed while deaf")
            await asyncio.sleep(0.35)
            assert (await http.get(f"/api/v1/events/{event}")).json() == {
                "v": "Changed while deaf"}
            await until(lambda: feed.listening)  # and it listens again
    finally:
        await reads_conn.close()
