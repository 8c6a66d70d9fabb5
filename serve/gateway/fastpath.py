"""The reservation fast path: ``POST /api/v1/events/{id}/registrations`` without FastAPI.

In a sale nearly every request is a reservation, and FastAPI's routing, dependency solving and
request/response objects cost the gateway more than the call to the inventory host itself.
This ASGI middleware sits inside every other one (correlation id and metrics, NUL check, body
limit, rate limit, read caches), so a reservation passes the same checks as any request; it
answers the plain case itself and hands everything else to the FastAPI route, which answers
it as before:

- a missing or invalid token, a body that is not valid ``RegistrationIn`` JSON, an
  ``Idempotency-Key`` longer than 200 characters;
- a refusal for an event this replica has not yet seen: the route asks the event service,
  which answers ``404`` to a caller who may not see the event (its existence stays private)
  and the inventory's refusal to anyone else.

An event not yet seen is reserved here too: the inventory sells only on a published event, and
on a group event only to its members, so whoever it sells to may see the event; the event is
then known. What it answers is what the route answers: ``201`` with the registration, or the
inventory's problem (``409 sold-out`` ...) as ``application/problem+json``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.common.errors import ProblemError
from serve.common.problems import render, response_headers, status_of
from serve.events.schemas import RegistrationIn
from serve.gateway.auth import bearer_subject

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
        if match is None or known is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization")
        user_id = bearer_subject(self.state.settings,
                                 authorization.decode("latin-1") if authorization else None)
        key = headers.get(b"idempotency-key")
        json_body = headers.get(b"content-type", b"").split(b";")[0].strip() == b"application/json"
        if user_id is None or not json_body or (key is not None and len(key) > KEY_LIMIT):
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
        event_id = match[1]
        seen = event_id in known
        if self.route is not None:
            scope["route"] = self.route
        try:
            result = await self.state.inventory.reserve(
                event_id, user_id, request.ticket_type_id, request.quantity,
                request.payment_mode, key.decode("latin-1") if key else uuid.uuid4().hex,
                scope["state"]["correlation_id"])
        except ProblemError as exc:
            if not seen:  # nothing was taken: the route answers, as the event service says
                await self.app(scope, _replay(body, [], receive), send)
                return
            status, _ = status_of(exc)
            await JSONResponse(render(exc, scope["path"]), status_code=status,
                               media_type="application/problem+json",
                               headers=response_headers(exc))(scope, receive, send)
            return
        known[event_id] = True
        body = orjson.dumps(result)
        await send({"type": "http.response.start", "status": 201, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


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
