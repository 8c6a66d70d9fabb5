"""In-memory answers of one gateway replica for anonymous event reads.

``GET /api/v1/events``, ``/events/{id}`` and ``/events/{id}/ticket-types`` without an
``Authorization`` header are the same for every anonymous caller, and in a sale most requests
are those reads. Each replica keeps their ``200 application/json`` answers for
``AFISHA_LOCAL_CACHE_TTL_SECONDS`` (1 s) and makes one upstream call per key at a time (callers
of a key being fetched wait for that answer instead of sending their own).

A write through this replica drops what it changes at once: a successful non-GET under
``/api/v1/events/{id}`` drops that event's answers and the lists; one under
``/api/v1/registrations/`` drops every ticket-types answer. A reservation drops nothing: in a
sale there are many a second, and dropping the event's answers at each would leave its readers
no cache at all. Its seats, like writes through another replica and holds that expire, show
within the TTL. Availability in these answers is a listing: the inventory decides every
reservation.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

READS = re.compile(r"^/api/v1/events(?:/(?P<event>[^/]+)(?P<types>/ticket-types)?)?/?$")
EVENT_WRITE = re.compile(r"^/api/v1/events/(?P<event>[^/]+)(?P<rest>/[^?]*)?$")
MAX_BODY = 512 * 1024

Answer = tuple[float, bytes]  # (expires at, body)


class LocalReadCache:
    def __init__(self, app: ASGIApp, ttl: float, max_entries: int = 10_000) -> None:
        self.app = app
        self.ttl = ttl
        self.max_entries = max_entries
        self.answers: OrderedDict[str, Answer] = OrderedDict()
        self.filling: dict[str, asyncio.Future[bytes | None]] = {}
        self.hits = 0
        self.misses = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "GET":
            await self._write(scope, receive, send)
            return
        path = scope["path"]
        if (not READS.match(path)
                or any(name == b"authorization" for name, _ in scope.get("headers") or [])):
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
        await self._fill(key, scope, receive, send)

    def _get(self, key: str) -> bytes | None:
        answer = self.answers.get(key)
        if answer is None:
            return None
        if answer[0] <= time.monotonic():
            del self.answers[key]
            return None
        return answer[1]

    async def _fill(self, key: str, scope: Scope, receive: Receive, send: Send) -> None:
        filling: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self.filling[key] = filling
        status, headers, body = 0, dict[bytes, bytes](), b""
        try:
            status, headers, body = await capture_response(self.app, scope, receive, send)
        finally:
            keep = (status == 200 and len(body) <= MAX_BODY
                    and headers.get(b"content-type", b"").startswith(b"application/json"))
            if keep:
                self.answers[key] = (time.monotonic() + self.ttl, body)
                self.answers.move_to_end(key)
                while len(self.answers) > self.max_entries:
                    self.answers.popitem(last=False)
            del self.filling[key]
            filling.set_result(body if keep else None)

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
            del self.answers[key]


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
