"""In-memory answers of one gateway replica for anonymous event reads.

``GET /api/v1/events``, ``/events/{id}`` and ``/events/{id}/ticket-types`` without an
``Authorization`` header are the same for every anonymous caller, and in a sale most requests
are those reads. Each replica keeps their ``200 application/json`` answers and makes one
upstream call per key at a time (callers of a key being fetched wait for that answer instead of
sending their own).

How long an answer is kept:

- While the replica hears the event service's read changes (``changefeed.ReadChanges``), up to
  ``AFISHA_LOCAL_CACHE_MAX_SECONDS`` (60 s). A change to an event or its ticket types drops that
  event's answers and the lists; a change to its seats (a reservation, a hold ending, a
  confirmation, a cancellation) leaves its ticket-types answers ``AFISHA_LOCAL_CACHE_TTL_SECONDS``
  (1 s) at most, so in a sale they are fetched about once a second instead of after every
  reservation. An answer fetched while its event changed is kept only that short time too.
- Without the feed (not started, or its connection lost), ``AFISHA_LOCAL_CACHE_TTL_SECONDS``;
  losing it shortens what was kept to that.

A write through this replica drops what it changes at once: a successful non-GET under
``/api/v1/events/{id}`` (but a reservation) drops that event's answers and the lists; one under
``/api/v1/registrations/`` drops every ticket-types answer. Availability in these answers is a
listing: the inventory decides every reservation.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.gateway.changefeed import ReadChanges

READS = re.compile(r"^/api/v1/events(?:/(?P<event>[^/]+)(?P<types>/ticket-types)?)?/?$")
EVENT_WRITE = re.compile(r"^/api/v1/events/(?P<event>[^/]+)(?P<rest>/[^?]*)?$")
MAX_BODY = 512 * 1024


class Answer(NamedTuple):
    expires_at: float
    body: bytes
    event: str | None  # None: a list of events
    seats: bool  # it shows seats (ticket types)


class LocalReadCache:
    def __init__(self, app: ASGIApp, ttl: float, max_ttl: float = 0.0,
                 feed: ReadChanges | None = None, max_entries: int = 10_000) -> None:
        self.app = app
        self.ttl = ttl
        self.max_ttl = max(max_ttl, ttl)
        self.feed = feed
        self.max_entries = max_entries
        self.answers: OrderedDict[str, Answer] = OrderedDict()
        self.by_event: dict[str | None, set[str]] = {}
        self.filling: dict[str, asyncio.Future[bytes | None]] = {}
        self.hits = 0
        self.misses = 0
        # Change numbers: ``changes`` counts what the feed said; ``changed_at`` is the number of
        # each event's last change (the oldest leave past max_entries; ``floor`` is the newest
        # number that left, or of a change to any event), ``lists_changed_at`` the lists'.
        self.changes = 0
        self.changed_at: OrderedDict[str, int] = OrderedDict()
        self.floor = 0
        self.lists_changed_at = 0
        if feed is not None:
            feed.subscribe(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "GET":
            await self._write(scope, receive, send)
            return
        path = scope["path"]
        read = READS.match(path)
        if read is None or any(name == b"authorization" for name, _ in scope.get("headers") or []):
            await self.app(scope, receive, send)
            return
        key = path.rstrip("/") + "?" + scope["query_string"].decode("latin-1")
        body = self._get(key)
        if body is None and key in self.filling:
            body = await asyncio.shield(self.filling[key])
        if body is not None:
            self.hits += 1
            await send_cached(send, body)
            return
        self.misses += 1
        await self._fill(key, read["event"], read["types"] is not None, scope, receive, send)

    def _get(self, key: str) -> bytes | None:
        answer = self.answers.get(key)
        if answer is None:
            return None
        if answer.expires_at <= time.monotonic():
            self._remove(key)
            return None
        return answer.body

    async def _fill(self, key: str, event: str | None, seats: bool, scope: Scope,
                    receive: Receive, send: Send) -> None:
        filling: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self.filling[key] = filling
        started = self.changes
        status, headers, body = 0, dict[bytes, bytes](), b""
        try:
            status, headers, body = await capture_response(self.app, scope, receive, send)
        finally:
            keep = (status == 200 and len(body) <= MAX_BODY
                    and headers.get(b"content-type", b"").startswith(b"application/json"))
            if keep:
                expires_at = time.monotonic() + self._ttl_of(event, started)
                self._store(key, Answer(expires_at, body, event, seats))
            del self.filling[key]
            filling.set_result(body if keep else None)

    def _ttl_of(self, event: str | None, started: int) -> float:
        """The long TTL while the feed is heard and nothing of ``event`` (or, for a list, of
        any event) changed since the fill ``started``."""
        if self.feed is None or not self.feed.listening:
            return self.ttl
        last = (self.lists_changed_at if event is None
                else max(self.changed_at.get(event, 0), self.floor))
        return self.ttl if last > started else self.max_ttl

    def _store(self, key: str, answer: Answer) -> None:
        if key in self.answers:
            self._remove(key)
        self.answers[key] = answer
        self.by_event.setdefault(answer.event, set()).add(key)
        while len(self.answers) > self.max_entries:
            self._remove(next(iter(self.answers)))

    def _remove(self, key: str) -> None:
        answer = self.answers.pop(key)
        keys = self.by_event[answer.event]
        keys.discard(key)
        if not keys:
            del self.by_event[answer.event]

    # The read-change feed (serve.gateway.changefeed.ChangeSubscriber).

    def changed(self, kind: str, event_ids: list[str] | None) -> None:
        self.changes += 1
        if event_ids is None:
            self.changed_at.clear()
            self.floor = self.changes
            if kind == "e":
                self.lists_changed_at = self.changes
                self.answers.clear()
                self.by_event.clear()
            else:
                self._shorten(lambda answer: answer.seats)
            return
        for event in event_ids:
            self.changed_at[event] = self.changes
            self.changed_at.move_to_end(event)
            if kind == "e":
                for key in list(self.by_event.get(event, ())):
                    self._remove(key)
            else:
                self._shorten(lambda answer: answer.seats, self.by_event.get(event, ()))
        while len(self.changed_at) > self.max_entries:
            self.floor = self.changed_at.popitem(last=False)[1]
        if kind == "e":
            self.lists_changed_at = self.changes
            for key in list(self.by_event.get(None, ())):
                self._remove(key)

    def feed_lost(self) -> None:
        self.changes += 1
        self.floor = self.lists_changed_at = self.changes
        self.changed_at.clear()
        self._shorten(lambda _answer: True)

    def _shorten(self, matches: Callable[[Answer], bool],
                 keys: Iterable[str] | None = None) -> None:
        """Keep the matching answers (of ``keys``, else all) ``ttl`` at most from now."""
        latest = time.monotonic() + self.ttl
        for key in list(keys if keys is not None else self.answers):
            answer = self.answers[key]
            if matches(answer) and answer.expires_at > latest:
                self.answers[key] = answer._replace(expires_at=latest)

    # Writes through this replica.

    async def _write(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if status < 400:
            self.forget(scope["path"])

    def forget(self, path: str) -> None:
        """Drop the answers a successful write to ``path`` changes."""
        if path.startswith("/api/v1/registrations/"):
            self._drop(lambda key: "/ticket-types?" in key)
            return
        write = EVENT_WRITE.match(path)
        if write is None:
            if path.rstrip("/") == "/api/v1/events":  # a new event: the lists change
                self._drop(lambda key: key.startswith("/api/v1/events?"))
            return
        event = write["event"]
        if (write["rest"] or "") == "/registrations":  # a reservation: seats show within the TTL
            return
        self._drop(lambda key: key.startswith(f"/api/v1/events/{event}/")
                   or key.startswith(f"/api/v1/events/{event}?")
                   or key.startswith("/api/v1/events?"))

    def _drop(self, matches: Callable[[str], bool]) -> None:
        for key in [k for k in self.answers if matches(k)]:
            self._remove(key)


async def capture_response(app: ASGIApp, scope: Scope, receive: Receive, send: Send,
                           miss: bool = False) -> tuple[int, dict[bytes, bytes], bytes]:
    """Run ``app``, passing its answer on, and return its status, headers and body
    (``miss`` marks the answer ``X-Cache: MISS``)."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            if miss:
                message["headers"] = [*message.get("headers", []), (b"x-cache", b"MISS")]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
        await send(message)

    await app(scope, receive, capture)
    if start is None:
        return 0, {}, b""
    return start["status"], dict(start.get("headers", [])), b"".join(chunks)


async def send_cached(send: Send, body: bytes) -> None:
    """A kept ``200 application/json`` answer, marked ``X-Cache: HIT``."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-cache", b"HIT")]})
    await send({"type": "http.response.body", "body": body})
