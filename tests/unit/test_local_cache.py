"""The gateway replica's in-memory cache of anonymous event reads (an ASGI app behind it)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from serve.gateway.changefeed import ReadChanges, parse
from serve.gateway.localcache import LocalReadCache


class Upstream:
    """Answers every request with a counter, so a cached answer shows as an old number."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.status = status
        self.delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append((scope["method"], scope["path"]))
        await asyncio.sleep(self.delay)
        body = json.dumps({"n": len(self.calls)}).encode()
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def client(upstream: Upstream, ttl: float = 30.0) -> httpx.AsyncClient:
    app = LocalReadCache(upstream, ttl=ttl)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_anonymous_reads_are_answered_from_memory_until_the_ttl() -> None:
    upstream = Upstream()
    async with client(upstream, ttl=0.3) as http:
        first = await http.get("/api/v1/events/e1")
        second = await http.get("/api/v1/events/e1")
        assert second.headers["x-cache"] == "HIT" and second.json() == first.json() == {"n": 1}
        assert (await http.get("/api/v1/events/e1/ticket-types")).json() == {"n": 2}
        assert (await http.get("/api/v1/events?limit=20")).json() == {"n": 3}
        assert (await http.get("/api/v1/events?limit=5")).json() == {"n": 4}
        await asyncio.sleep(0.35)
        assert (await http.get("/api/v1/events/e1")).json() == {"n": 5}


async def test_personal_reads_other_paths_and_refusals_are_not_kept() -> None:
    upstream = Upstream()
    async with client(upstream) as http:
        for _ in range(2):
            await http.get("/api/v1/events/e1", headers={"Authorization": "Bearer t"})
            await http.get("/api/v1/events/e1/registrations")
    assert len(upstream.calls) == 4
    refusing = Upstream(status=404)
    async with client(refusing) as http:
        for _ in range(2):
            assert (await http.get("/api/v1/events/missing")).status_code == 404
    assert len(refusing.calls) == 2


async def test_concurrent_misses_of_one_key_make_one_upstream_call() -> None:
    upstream = Upstream(delay=0.05)
    async with client(upstream) as http:
        answers = await asyncio.gather(*(http.get("/api/v1/events") for _ in range(20)))
    assert [a.json() for a in answers] == [{"n": 1}] * 20
    assert len(upstream.calls) == 1


@pytest.mark.parametrize(("write", "dropped", "kept"), [
    ("PUT /api/v1/events/e1", {"/api/v1/events/e1", "/api/v1/events/e1/ticket-types",
                               "/api/v1/events"}, {"/api/v1/events/e2"}),
    # a reservation drops nothing (its seats show within the TTL); a waiting-list entry does
    ("POST /api/v1/events/e1/registrations", set(),
     {"/api/v1/events", "/api/v1/events/e1/ticket-types", "/api/v1/events/e2/ticket-types"}),
    ("POST /api/v1/events/e1/waitlist", {"/api/v1/events/e1", "/api/v1/events/e1/ticket-types",
                                          "/api/v1/events"}, {"/api/v1/events/e2"}),
    ("POST /api/v1/registrations/r1/cancel",
     {"/api/v1/events/e1/ticket-types", "/api/v1/events/e2/ticket-types"},
     {"/api/v1/events", "/api/v1/events/e1"}),
    ("POST /api/v1/events", {"/api/v1/events"}, {"/api/v1/events/e1"}),
])
async def test_a_write_through_the_replica_drops_what_it_changes(
        write: str, dropped: set[str], kept: set[str]) -> None:
    upstream = Upstream()
    reads = sorted(dropped | kept)
    async with client(upstream) as http:
        before = {path: (await http.get(path)).json() for path in reads}
        method, path = write.split()
        await http.request(method, path)
        after = {path: (await http.get(path)).json() for path in reads}
    assert {p for p in reads if after[p] != before[p]} == dropped


async def test_a_refused_write_drops_nothing() -> None:
    upstream = Upstream()
    async with client(upstream) as http:
        before = (await http.get("/api/v1/events/e1")).json()
        upstream.status = 409
        assert (await http.put("/api/v1/events/e1")).status_code == 409
        upstream.status = 200
        assert (await http.get("/api/v1/events/e1")).json() == before


def heard(ttl: float = 0.2) -> tuple[Upstream, LocalReadCache, httpx.AsyncClient]:
    """A cache whose replica hears the read changes (a feed never started: the tests say what
    it would have heard)."""
    feed = ReadChanges("postgresql://unused", "afisha_reads_test")
    feed.listening = True
    upstream = Upstream()
    cache = LocalReadCache(upstream, ttl=ttl, max_ttl=60, feed=feed)
    return upstream, cache, httpx.AsyncClient(transport=httpx.ASGITransport(app=cache),
                                              base_url="http://gw")


READ_PATHS = ["/api/v1/events", "/api/v1/events/e1", "/api/v1/events/e1/ticket-types",
              "/api/v1/events/e2", "/api/v1/events/e2/ticket-types"]


async def snapshot(http: httpx.AsyncClient) -> dict[str, object]:
    return {path: (await http.get(path)).json() for path in READ_PATHS}


async def changed_since(http: httpx.AsyncClient, before: dict[str, object]) -> set[str]:
    """The paths whose answer is not the one in ``before``."""
    now = await snapshot(http)
    return {p for p in READ_PATHS if now[p] != before[p]}


async def test_while_the_feed_is_heard_answers_are_kept_until_they_change() -> None:
    _, cache, http = heard()
    async with http:
        before = await snapshot(http)
        await asyncio.sleep(0.25)
        assert await changed_since(http, before) == set()  # past the short TTL: kept
        cache.changed("e", ["e1"])  # the event itself: its answers and the lists go at once
        assert await changed_since(http, before) == {
            "/api/v1/events", "/api/v1/events/e1", "/api/v1/events/e1/ticket-types"}


async def test_a_seat_change_leaves_that_events_seats_the_short_ttl() -> None:
    _, cache, http = heard()
    async with http:
        before = await snapshot(http)
        cache.changed("s", ["e2"])
        assert await changed_since(http, before) == set()  # still kept just after the change
        await asyncio.sleep(0.25)
        assert await changed_since(http, before) == {"/api/v1/events/e2/ticket-types"}


@pytest.mark.parametrize(("kind", "changed"), [
    ("e", set(READ_PATHS)),
    ("s", {"/api/v1/events/e1/ticket-types", "/api/v1/events/e2/ticket-types"}),
])
async def test_a_change_to_any_event_reaches_every_answer_it_may_touch(
        kind: str, changed: set[str]) -> None:
    _, cache, http = heard()
    async with http:
        before = await snapshot(http)
        cache.changed(kind, None)
        await asyncio.sleep(0.25)
        assert await changed_since(http, before) == changed


async def test_an_answer_fetched_while_its_event_changed_is_kept_briefly() -> None:
    upstream, cache, http = heard()
    upstream.delay = 0.05
    async with http:
        fetching = asyncio.create_task(http.get("/api/v1/events/e1"))
        await asyncio.sleep(0.02)
        cache.changed("s", ["e1"])  # the answer being fetched may predate the change
        cached_meanwhile = asyncio.create_task(http.get("/api/v1/events/e2"))
        first = (await fetching).json()
        await cached_meanwhile
        await asyncio.sleep(0.25)
        assert (await http.get("/api/v1/events/e1")).json() != first
        assert (await http.get("/api/v1/events/e2")).headers["x-cache"] == "HIT"


async def test_a_lost_or_unheard_feed_means_the_short_ttl() -> None:
    _, cache, http = heard()
    async with http:
        before = await snapshot(http)
        assert cache.feed is not None
        cache.feed.listening = False
        cache.feed_lost()
        await asyncio.sleep(0.25)
        assert await changed_since(http, before) == set(READ_PATHS)  # what was kept is shortened
        before = await snapshot(http)
        await asyncio.sleep(0.25)
        assert await changed_since(http, before) == set(READ_PATHS)  # and so is what came after


def test_notifications_are_parsed_strictly() -> None:
    assert parse("e:a,b") == ("e", ["a", "b"])
    assert parse("s:*") == ("s", None)
    assert parse("x:a") is None and parse("e:") is None and parse("e") is None
