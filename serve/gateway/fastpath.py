"""The reservation fast path: ``POST /api/v1/events/{id}/registrations`` without FastAPI.

In a sale nearly every request is a reservation, and FastAPI's routing, dependency solving and
request/response objects cost the gateway more than the call to the inventory host itself.
This ASGI middleware sits inside every other one (correlation id and metrics, NUL check, body
limit, rate limit, read caches), so a reservation passes the same checks as any request; it
answers the plain case itself and hands everything else to the FastAPI route, which answers
it as before:

- an event this replica has not yet seen go to the event service (the route learns it);
- a missing or invalid token, a body that is not valid ``RegistrationIn`` JSON, an
  ``Idempotency-Key`` longer than 200 characters.

What it answers is what the route answers: ``201`` with the registration, or the inventory's
problem (``409 sold-out`` ...) as ``application/problem+json``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.common.context import RequestContext
from serve.common.errors import ProblemError, Unauthorized
from serve.common.problems import render, status_of
from serve.events.schemas import RegistrationIn
from serve.gateway.auth import client_ip
from serve.users.tokens import identity_from_access_token

PATH = re.compile(r"^/api/v1/events/([^/]+)/registrations$")
TEMPLATE = "/api/v1/events/{event_id}/registrations"
KEY_LIMIT = 200


class ReserveFastPath:
    def __init__(self, app: ASGIApp, state: Any, routes: list[BaseRoute]) -> None:
        self.app = app
        self.state = state  # the FastAPI app's state: settings, inventory, known events
        # The route it stands in for: metrics label the request with its template.
        self.route = next((r for r in _flat(routes) if getattr(r, "path", None) == TEMPLATE
                           and "POST" in (getattr(r, "methods", None) or ())), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = PATH.match(scope["path"])
        known = getattr(self.state, "known_events", None)
        if match is None or known is None or match[1] not in known:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        identity = self._identity(headers.get(b"authorization"))
        key = headers.get(b"idempotency-key")
        json_body = headers.get(b"content-type", b"").split(b";")[0].strip() == b"application/json"
        if identity is None or not json_body or (key is not None and len(key) > KEY_LIMIT):
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        try:
            request = RegistrationIn.model_validate_json(body) if not more else None
        except ValidationError:
            request = None
        if request is None:  # the route reads the body again and answers the 422
            await self.app(scope, _replay(body, more, receive), send)
            return
        if self.route is not None:
            scope["route"] = self.route
        ctx = RequestContext(correlation_id=scope["state"]["correlation_id"],
                             client_ip=client_ip(scope, self.state.settings.forwarded_for_hops),
                             identity=identity)
        try:
            result = await self.state.inventory.reserve(
                match[1], identity.user_id, request.ticket_type_id, request.quantity,
                request.payment_mode, key.decode("latin-1") if key else uuid.uuid4().hex,
                ctx.correlation_id)
        except ProblemError as exc:
            await _problem(scope, send, exc)
            return
        await _answer(send, 201, orjson.dumps(result), b"application/json")

    def _identity(self, authorization: bytes | None) -> Any:
        if not authorization or authorization[:7].lower() != b"bearer ":
            return None
        try:
            return identity_from_access_token(self.state.settings,
                                              authorization[7:].decode("latin-1").strip())
        except (Unauthorized, LookupError):
            return None


def _flat(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Routes, with those of included routers (FastAPI keeps them on ``original_router``)."""
    out: list[BaseRoute] = []
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        out.extend(_flat(inner) if inner is not None else [route])
    return out


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole body, or what was read until the client left (returned as messages too)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replay(body: bytes, more: list[Message], receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if more:  # the client left while the body was read: the route sees it leave
        pending = [{"type": "http.request", "body": body, "more_body": True}, *more]

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _problem(scope: Scope, send: Send, exc: ProblemError) -> None:
    status, _ = status_of(exc)
    headers: list[tuple[bytes, bytes]] = []
    if "retry_after" in exc.extensions:
        headers.append((b"retry-after", str(exc.extensions["retry_after"]).encode()))
    if status == 429:
        headers.append((b"cache-control", b"no-store"))
    await _answer(send, status, orjson.dumps(render(exc, scope["path"])),
                  b"application/problem+json", headers)


async def _answer(send: Send, status: int, body: bytes, media_type: bytes,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", media_type), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
