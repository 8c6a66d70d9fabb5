"""The group commit of an inventory host: one statement, one round trip, per batch.

A batch of reservations decided in memory (any events of the host) is written by a single
data-modifying statement in autocommit: it share-locks the host's fence rows at its epoch and
the events' rows of its kind (hot or not), and inserts the registrations, holds, idempotency
keys and ``registration.created`` outbox rows only if every fence and event passed; a
``pg_notify`` wakes the event service's relay when they commit. The statement answers which
scopes were still held and which events still of this host's kind, so the host refuses the
events it lost and writes the rest again.

The host's flusher writes one batch at a time, so one dedicated connection serves it. A
connection that breaks mid-statement leaves the outcome unknown; the batch's registration ids
are new, so a lookup on a fresh connection tells whether the statement committed (one
statement: all of it or nothing) and only an uncommitted batch is written again.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import asyncpg

from actors.store import NewRegistration, created_payload
from cluster.settings import Settings, schema_of
from messaging import catalogue
from messaging.envelope import Envelope
from messaging.outbox import channel_of, outbox_for
from messaging.relay import asyncpg_dsn
from storage.event import idempotency_keys, registrations, reservations

PRODUCER = "event"
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_S = 30


class Lost(Exception):
    """The connection broke and the batch was found not written (it may be written again)."""


class UnknownOutcome(Exception):
    """The connection broke and whether the batch was written could not be found out: the
    host must rebuild the batch's events from Postgres before deciding for them again."""


@functools.cache
def statement() -> str:
    """$1 scopes, $2 epoch, $3 event ids, $4 hot, $5.. the rows' columns, $20 the channel."""
    return (
        "WITH f AS MATERIALIZED (SELECT scope FROM inventory_fences "
        "  WHERE scope = ANY($1::text[]) AND epoch = $2 FOR SHARE), "
        "e AS MATERIALIZED (SELECT id FROM events WHERE id = ANY($3::text[]) AND hot = $4 "
        "  FOR SHARE), "
        "ok AS MATERIALIZED (SELECT (SELECT count(*) FROM f) = cardinality($1::text[]) "
        "  AND (SELECT count(*) FROM e) = cardinality($3::text[]) AS ok), "
        "r AS (INSERT INTO " + registrations.fullname + " (id, event_id, ticket_type_id, "
        "  user_id, quantity, status, payment_mode, amount, currency, prepayment_amount) "
        "  SELECT * FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::int[], "
        "  $10::text[], $11::text[], $12::int[], $13::text[], $14::int[]) "
        "  WHERE (SELECT ok FROM ok)), "
        "h AS (INSERT INTO " + reservations.fullname + " (id, registration_id, event_id, "
        "  ticket_type_id, user_id, quantity, status, expires_at) "
        "  SELECT h.id, h.reg, h.ev, h.tt, h.usr, h.n, 'held', h.expires "
        "  FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::int[], "
        "  $15::text[], $16::timestamptz[]) AS h(reg, ev, tt, usr, n, id, expires) "
        "  WHERE h.id IS NOT NULL AND (SELECT ok FROM ok)), "
        "k AS (INSERT INTO " + idempotency_keys.fullname + " (user_id, key, registration_id) "
        "  SELECT k.usr, k.key, k.reg FROM unnest($8::text[], $17::text[], $5::text[]) "
        "  AS k(usr, key, reg) WHERE k.key IS NOT NULL AND (SELECT ok FROM ok)), "
        "o AS (INSERT INTO " + outbox_for(PRODUCER).fullname + " (message_id, type, "
        "  aggregate_id, envelope) "
        "  SELECT m.id, 'registration.created', m.agg, m.env::jsonb "
        "  FROM unnest($18::uuid[], $6::text[], $19::text[]) WITH ORDINALITY "
        "  AS m(id, agg, env, n) WHERE (SELECT ok FROM ok) ORDER BY m.n) "
        "SELECT ARRAY(SELECT scope FROM f) AS held, ARRAY(SELECT id FROM e) AS kind_ok, "
        "  ARRAY(SELECT pg_notify($20, '')::text FROM ok WHERE ok) AS notified")


def arguments(batch: list[NewRegistration], scopes: list[str], epoch: int,
              event_ids: list[str], hot: bool) -> list[Any]:
    """The statement's arguments: every row's columns, holds and keys as NULL where absent."""
    envelopes = [Envelope(type="registration.created", producer=PRODUCER,
                          correlation_id=n.correlation_id,
                          data=catalogue.validate("registration.created", created_payload(n)))
                 for n in batch]
    return [scopes, epoch, event_ids, hot,
            [n.registration_id for n in batch], [n.event_id for n in batch],
            [n.ticket_type_id for n in batch], [n.user_id for n in batch],
            [n.quantity for n in batch], [n.status for n in batch],
            [n.payment_mode for n in batch], [n.amount for n in batch],
            [n.currency for n in batch], [n.prepayment_amount for n in batch],
            [n.reservation_id for n in batch], [n.expires_at for n in batch],
            [n.idempotency_key for n in batch],
            [e.id for e in envelopes], [e.model_dump_json() for e in envelopes],
            channel_of(PRODUCER)]


def broken(exc: BaseException) -> bool:
    """The connection failed (closed, reset, or ended by the server), not the statement."""
    if isinstance(exc, asyncpg.InterfaceError | OSError | asyncio.TimeoutError):
        return True
    code = str(getattr(exc, "sqlstate", "") or "")
    return code.startswith("08") or code.startswith("57P")


class GroupCommit:
    def __init__(self, settings: Settings) -> None:
        self.dsn = asyncpg_dsn(settings.database_url_for(PRODUCER))
        self.schema = schema_of(PRODUCER)
        self.conn: asyncpg.Connection | None = None
        self.backend: int | None = None  # the server pid of ``conn``
        self.prepared: Any = None  # the statement prepared on ``conn``
        self.reconnects = 0

    async def open(self) -> None:
        """Connect and prepare the statement ahead of the first batch."""
        await self._prepared()

    async def _prepared(self) -> Any:
        """The statement, prepared on the current connection (a new one after a break)."""
        if self.conn is None or self.conn.is_closed() or self.prepared is None:
            self.prepared = await (await self._connection()).prepare(statement())
        return self.prepared

    async def _connection(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            self.conn = await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=STATEMENT_TIMEOUT_S,
                server_settings={"search_path": self.schema,
                                 "application_name": f"afisha-{PRODUCER}-commit"})
            self.backend = self.conn.get_server_pid()
        return self.conn

    async def write(self, batch: list[NewRegistration], scopes: list[str], epoch: int,
                    event_ids: list[str], hot: bool) -> tuple[set[str], set[str]]:
        """Write ``batch`` if every scope is held at ``epoch`` and every event is of the
        host's kind; the scopes held and the events of its kind either way. A database
        error (a reused idempotency key) raises with nothing written."""
        args = arguments(batch, scopes, epoch, event_ids, hot)
        for attempt in (1, 2):
            prepared = await self._prepared()  # failing here, nothing was sent
            try:
                row = await prepared.fetchrow(*args)
            except Exception as exc:
                if not broken(exc):
                    raise
                old = self.backend
                await self.close()
                self.reconnects += 1
                try:
                    committed = await self._committed(batch, old)
                except Exception as check:
                    raise UnknownOutcome(f"the database connection broke ({exc}) and the "
                                         f"batch could not be looked up: {check}") from check
                if committed:
                    return set(scopes), set(event_ids)
                if attempt == 2:
                    raise Lost(f"the database connection broke twice: {exc}") from exc
                continue
            assert row is not None
            return set(row["held"]), set(row["kind_ok"])
        raise AssertionError("unreachable")

    async def _committed(self, batch: list[NewRegistration], backend: int | None) -> bool:
        """Whether ``batch`` was written, once the backend that ran it (``backend``) is gone."""
        conn = await self._connection()
        if backend is not None:
            await conn.execute("SELECT pg_terminate_backend($1)", backend)
            deadline = asyncio.get_running_loop().time() + STATEMENT_TIMEOUT_S
            while await conn.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", backend):
                if asyncio.get_running_loop().time() > deadline:
                    raise Lost(f"the backend {backend} that wrote a batch does not end")
                await asyncio.sleep(0.05)
        found = await conn.fetchval(
            f"SELECT count(*) FROM {registrations.fullname} WHERE id = ANY($1::text[])",
            [n.registration_id for n in batch])
        return bool(found)

    async def close(self) -> None:
        conn, self.conn, self.prepared = self.conn, None, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
