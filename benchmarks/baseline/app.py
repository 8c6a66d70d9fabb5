"""The baseline: reserving seats the common way, for ``make bench`` to compare Afisha with.

A plain FastAPI + asyncpg service with the same public routes the benchmark calls and the same
rows written per reservation as Afisha's event service (registration, reservation, idempotency
key, ``registration.created`` outbox row), and, in the same transaction as a monolith would,
the rows Afisha's payment and analytics services write downstream of it (the pending payment,
the ``registration.created`` analytics row), so a reservation is *settled* (both rows there) in
the same sense on both sides. Overselling is prevented the usual way: each
reservation is one transaction that takes ``SELECT … FOR UPDATE`` on the ticket type's row,
checks the seats left, writes its rows and bumps the counter; concurrent buyers of one ticket
type queue on that row lock.

Tokens are verified like Afisha's gateway does (pinned algorithm, required claims, ``typ``), so
the same prepared users can call both. Run it with::

    BASELINE_DATABASE_URL=postgresql://… BASELINE_JWT_SECRET=… \\
        uvicorn benchmarks.baseline.app:app --port 8100

Configuration (environment): ``BASELINE_DATABASE_URL``, ``BASELINE_JWT_SECRET``,
``BASELINE_JWT_ISSUER`` (afisha), ``BASELINE_JWT_AUDIENCE`` (afisha-api), ``BASELINE_POOL_SIZE``
(16), ``BASELINE_RESERVATION_TTL_SECONDS`` (900).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
import jwt
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

SCHEMA = Path(__file__).with_name("schema.sql")
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub", "typ"]


class Problem(Exception):
    def __init__(self, status: int, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail = status, slug, detail


class RegistrationIn(BaseModel):
    ticket_type_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(default=1, strict=True, ge=1, le=100)
    payment_mode: Literal["full", "prepayment"] = "full"


async def create_schema(conn: asyncpg.Connection) -> None:
    await conn.execute(SCHEMA.read_text())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    size = int(os.environ.get("BASELINE_POOL_SIZE", "16"))
    app.state.pool = await asyncpg.create_pool(
        os.environ["BASELINE_DATABASE_URL"], min_size=size, max_size=size,
        server_settings={"search_path": "bench_baseline"})
    async with app.state.pool.acquire() as conn:
        await create_schema(conn)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(title="Reservation baseline (row lock)", lifespan=lifespan)


@app.exception_handler(Problem)
async def problem(request: Request, exc: Problem) -> JSONResponse:
    return JSONResponse({"type": f"https://afisha.dev/problems/{exc.slug}", "title": exc.slug,
                         "status": exc.status, "detail": exc.detail}, status_code=exc.status,
                        media_type="application/problem+json")


@app.exception_handler(RequestValidationError)
async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return await problem(request, Problem(422, "validation", str(exc.errors())))


def token_claims(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    if not authorization or not authorization.startswith("Bearer "):
        raise Problem(401, "unauthorized", "send an access token: Authorization: Bearer <token>")
    try:
        claims: dict[str, Any] = jwt.decode(
            authorization[7:], os.environ["BASELINE_JWT_SECRET"], algorithms=["HS256"],
            audience=os.environ.get("BASELINE_JWT_AUDIENCE", "afisha-api"),
            issuer=os.environ.get("BASELINE_JWT_ISSUER", "afisha"),
            options={"require": REQUIRED_CLAIMS}, leeway=5)
    except jwt.PyJWTError as exc:
        raise Problem(401, "invalid-token", "the token is not valid") from exc
    if claims.get("typ") != "access":
        raise Problem(401, "invalid-token", "not an access token")
    return claims


Claims = Annotated[dict[str, Any], Depends(token_claims)]


@app.get("/api/v1/auth/session")
async def session(claims: Claims) -> dict[str, Any]:
    """The trivial authenticated GET: verify the token, answer whom it names."""
    return {"user_id": str(claims["sub"]), "roles": list(claims.get("roles") or [])}


@app.get("/api/v1/events")
async def list_events(request: Request, limit: int = 20) -> dict[str, Any]:
    rows = await request.app.state.pool.fetch(
        "SELECT id, organization_id, title, description, venue, starts_at, ends_at, status "
        "FROM events WHERE status = 'published' ORDER BY starts_at, id LIMIT $1",
        min(max(limit, 1), 100))
    return {"items": [dict(r) for r in rows], "next_cursor": None}


@app.get("/api/v1/events/{event_id}")
async def get_event(request: Request, event_id: str) -> dict[str, Any]:
    row = await request.app.state.pool.fetchrow(
        "SELECT id, organization_id, title, description, venue, starts_at, ends_at, status "
        "FROM events WHERE id = $1", event_id)
    if row is None:
        raise Problem(404, "not-found", f"no event {event_id}")
    return dict(row)


@app.get("/api/v1/events/{event_id}/ticket-types")
async def ticket_types(request: Request, event_id: str) -> dict[str, Any]:
    rows = await request.app.state.pool.fetch(
        "SELECT id, name, price, currency, quantity, quantity - taken AS available "
        "FROM ticket_types WHERE event_id = $1 ORDER BY id", event_id)
    return {"items": [dict(r) for r in rows], "next_cursor": None}


@app.post("/api/v1/events/{event_id}/registrations", status_code=201)
async def register(request: Request, event_id: str, body: RegistrationIn, claims: Claims,
                   idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
                   ) -> dict[str, Any]:
    user, key = str(claims["sub"]), idempotency_key or uuid.uuid4().hex
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        earlier = await conn.fetchval(
            "SELECT registration_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
            user, key)
        if earlier is not None:
            return view(await conn.fetchrow("SELECT * FROM registrations WHERE id = $1",
                                             earlier))
        tt = await conn.fetchrow(
            "SELECT t.*, e.organization_id, e.status AS event_status FROM ticket_types t "
            "JOIN events e ON e.id = t.event_id WHERE t.id = $1 AND t.event_id = $2 "
            "FOR UPDATE OF t", body.ticket_type_id, event_id)
        if tt is None:
            raise Problem(404, "not-found", f"no ticket type {body.ticket_type_id} for event "
                                            f"{event_id}")
        if tt["event_status"] != "published":
            raise Problem(409, "not-on-sale", "the event is not on sale")
        if tt["taken"] + body.quantity > tt["quantity"]:
            raise Problem(409, "sold-out", f"{tt['quantity'] - tt['taken']} seats left")
        if tt["per_user_limit"] is not None:
            mine = await conn.fetchval(
                "SELECT coalesce(sum(quantity), 0) FROM registrations WHERE ticket_type_id = $1 "
                "AND user_id = $2 AND status IN ('pending_payment', 'confirmed')",
                tt["id"], user)
            if mine + body.quantity > tt["per_user_limit"]:
                raise Problem(409, "per-user-limit", "over the per-user limit")
        row = await write_registration(conn, tt, user, body, key)
        await conn.execute("UPDATE ticket_types SET taken = taken + $2 WHERE id = $1",
                           tt["id"], body.quantity)
    return view(row)


async def write_registration(conn: asyncpg.Connection, tt: asyncpg.Record, user: str,
                             body: RegistrationIn, key: str) -> asyncpg.Record:
    amount = tt["price"] * body.quantity
    prepayment = (tt["prepayment_amount"] * body.quantity
                  if body.payment_mode == "prepayment" and tt["prepayment_amount"] else None)
    free = amount == 0
    registration_id, reservation_id = str(uuid.uuid4()), str(uuid.uuid4())
    status = "confirmed" if free else "pending_payment"
    row = await conn.fetchrow(
        "INSERT INTO registrations (id, event_id, ticket_type_id, user_id, quantity, status, "
        "payment_mode, amount, currency, prepayment_amount) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        registration_id, tt["event_id"], tt["id"], user, body.quantity, status,
        body.payment_mode, amount, tt["currency"], prepayment)
    if not free:
        await conn.execute(
            "INSERT INTO reservations (id, registration_id, event_id, ticket_type_id, user_id, "
            "quantity, status, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'held', $7)",
            reservation_id, registration_id, tt["event_id"], tt["id"], user, body.quantity,
            datetime.now(UTC) + timedelta(seconds=int(os.environ.get(
                "BASELINE_RESERVATION_TTL_SECONDS", "900"))))
    await conn.execute("INSERT INTO idempotency_keys (user_id, key, registration_id) "
                       "VALUES ($1, $2, $3)", user, key, registration_id)
    message_id = uuid.uuid4()
    envelope = {"id": str(message_id), "type": "registration.created",
                "occurred_at": datetime.now(UTC).isoformat(), "producer": "event",
                "correlation_id": uuid.uuid4().hex, "schema_version": 1, "data": {
                    "registration_id": registration_id, "event_id": tt["event_id"],
                    "organization_id": tt["organization_id"], "ticket_type_id": tt["id"],
                    "user_id": user, "quantity": body.quantity, "status": status,
                    "amount": amount, "currency": tt["currency"],
                    "payment_mode": body.payment_mode, "prepayment_amount": prepayment,
                    "reservation_id": None if free else reservation_id}}
    data = json.dumps(envelope["data"])
    await conn.execute("INSERT INTO outbox (message_id, type, aggregate_id, envelope) "
                       "VALUES ($1, 'registration.created', $2, $3::jsonb)",
                       message_id, registration_id, json.dumps(envelope))
    await conn.execute(
        "INSERT INTO domain_events (message_id, type, producer, occurred_at, correlation_id, "
        "event_id, organization_id, user_id, data) VALUES ($1, 'registration.created', 'event', "
        "now(), $2, $3, $4, $5, $6::jsonb)", message_id, envelope["correlation_id"],
        tt["event_id"], tt["organization_id"], user, data)
    if not free:
        await conn.execute(
            "INSERT INTO payments (id, registration_id, event_id, organization_id, user_id, kind, "
            "status, amount, currency, provider) "
            "VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, 'sandbox')",
            uuid.uuid4(), registration_id, tt["event_id"], tt["organization_id"], user,
            "prepayment" if prepayment else "full", prepayment or amount, tt["currency"])
    return row


def view(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "event_id": row["event_id"],
            "ticket_type_id": row["ticket_type_id"], "user_id": row["user_id"],
            "quantity": row["quantity"], "status": row["status"],
            "payment_mode": row["payment_mode"],
            "amount": {"amount": row["amount"], "currency": row["currency"]},
            "prepayment_amount": row["prepayment_amount"],
            "created_at": row["created_at"].isoformat()}
