"""The outbox relay of one publishing service, running inside that service's replica.

It wakes on the outbox ``NOTIFY``; it also polls, every ``listening_poll_seconds`` while its
LISTEN connection is up and every ``outbox_poll_seconds`` while it is not (a platform at rest
then sends no statement for the relay most seconds). It waits
``outbox_linger_ms`` for more rows to join the first (at a few messages a second each batch would
otherwise carry one, and every batch costs each consumer a transaction), takes
the oldest unsent rows under a per-service advisory lock (one relay drains at a time, so several
replicas keep the order per aggregate), hands them to the transport (the envelope's JSON as
stored, never parsed and dumped again), and marks them sent in the same transaction only after
the transport confirmed them. On failure nothing is marked, the
error is recorded on the head row, and it retries with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import schema_of
from messaging.listen import keep_listening
from messaging.outbox import channel_of, outbox_for
from messaging.transport import OutboxMessage, Transport
from serve.common.logs import get_logger
from serve.common.retry import backoff


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


class Relay:
    def __init__(self, service: str, sessions: async_sessionmaker[AsyncSession],
                 transport: Transport, *, database_url: str, poll_seconds: float = 1.0,
                 batch_size: int = 200, retry_backoff: float = 0.2,
                 retention_hours: float = 168, linger_seconds: float = 0.0,
                 listening_poll_seconds: float | None = None) -> None:
        self.service = service
        self.sessions = sessions
        self.transport = transport
        self.database_url = database_url
        self.poll_seconds = poll_seconds
        self.listening_poll = listening_poll_seconds or poll_seconds
        self.batch_size = batch_size
        self.retry_backoff = retry_backoff
        self.retention_hours = retention_hours
        self.linger = linger_seconds
        self._pruned_at = 0.0
        self.outbox = outbox_for(service)
        self.lock_key = zlib.crc32(f"afisha-relay:{schema_of(service)}".encode())
        self.failures = 0
        self.last_error: str | None = None
        self.sent = 0
        self.listening = False
        self.log = get_logger(f"{service}.relay")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"relay-{self.service}"),
                       asyncio.create_task(self._listen(), name=f"relay-listen-{self.service}")]

    def wake(self) -> None:
        self._wake.set()

    async def drain_once(self) -> int:
        """Send one batch; the number of rows marked sent (0 when another relay holds the lock)."""
        async with self.sessions() as session, session.begin():
            if not await session.scalar(select(func.pg_try_advisory_xact_lock(self.lock_key))):
                return 0
            env = self.outbox.c.envelope
            rows = (await session.execute(
                select(self.outbox.c.id, self.outbox.c.aggregate_id, self.outbox.c.type,
                       self.outbox.c.message_id, cast(env, Text).label("body"),
                       env["correlation_id"].astext.label("correlation_id"),
                       env["producer"].astext.label("producer"),
                       env["occurred_at"].astext.label("occurred_at"),
                       env["schema_version"].astext.label("schema_version"))
                .where(self.outbox.c.sent_at.is_(None)).order_by(self.outbox.c.id)
                .limit(self.batch_size).with_for_update(skip_locked=True))).all()
            if not rows:
                return 0
            await self.transport.send([OutboxMessage(
                r.aggregate_id, r.body.encode(), r.type, str(r.message_id), r.correlation_id,
                r.producer, datetime.fromisoformat(r.occurred_at), int(r.schema_version or 1))
                for r in rows])
            await session.execute(
                update(self.outbox).where(self.outbox.c.id.in_([r.id for r in rows]))
                .values(sent_at=func.now(), attempts=self.outbox.c.attempts + 1))
        self.sent += len(rows)
        return len(rows)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                sent = await self.drain_once()
            except Exception as exc:
                await self._failed(exc)
                continue
            if self.failures:
                self.log.info("relay recovered after %d failed attempts", self.failures)
            self.failures, self.last_error = 0, None
            await self._prune_hourly()
            if sent < self.batch_size:  # the outbox is empty: wait for the next row
                wait = self.listening_poll if self.listening else self.poll_seconds
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                if self.linger:  # and let the rows right behind it join its batch
                    await asyncio.sleep(self.linger)

    async def prune(self) -> int:
        """Delete rows sent longer than ``retention_hours`` ago; how many went."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(delete(self.outbox).where(
                self.outbox.c.sent_at < func.now() - timedelta(hours=self.retention_hours)))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def _prune_hourly(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._pruned_at < 3600:
            return
        self._pruned_at = now
        try:
            pruned = await self.prune()
        except Exception as exc:
            self.log.warning("pruning sent outbox rows failed: %s", exc)
            return
        if pruned:
            self.log.info("pruned %d outbox rows sent over %g hours ago", pruned,
                          self.retention_hours)

    async def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.log.warning("relay attempt %d failed: %s", self.failures, self.last_error)
        with contextlib.suppress(Exception):
            async with self.sessions() as session, session.begin():
                head = select(func.min(self.outbox.c.id)).where(self.outbox.c.sent_at.is_(None))
                await session.execute(
                    update(self.outbox).where(self.outbox.c.id == head.scalar_subquery())
                    .values(attempts=self.outbox.c.attempts + 1, last_error=self.last_error))
        await asyncio.sleep(backoff(self.failures, self.retry_backoff))

    async def _listen(self) -> None:
        """Keep a LISTEN connection open; reconnect when it drops (polling covers the gap:
        losing the connection wakes the relay, which then polls at the shorter interval)."""
        def up() -> None:
            self.listening = True
            self._wake.set()

        def down() -> None:
            self.listening = False
            self._wake.set()

        await keep_listening(asyncpg_dsn(self.database_url), channel_of(self.service),
                             lambda _payload: self._wake.set(), on_up=up, on_down=down,
                             keepalive_seconds=min(self.listening_poll, 5.0),
                             retry_seconds=self.poll_seconds, log=self.log)

    async def lag(self) -> dict[str, Any]:
        """Unsent rows and the age of the oldest one (seconds)."""
        oldest = func.extract("epoch", func.now() - func.min(self.outbox.c.created_at))
        async with self.sessions() as session:
            row = (await session.execute(
                select(func.count().label("unsent"), func.coalesce(oldest, 0).label("oldest"))
                .where(self.outbox.c.sent_at.is_(None)))).one()
        return {"unsent": int(row.unsent), "oldest_age_seconds": round(float(row.oldest), 3)}

    def status(self) -> dict[str, Any]:
        return {"sent": self.sent, "failures": self.failures, "last_error": self.last_error,
                "listening": self.listening, **self.transport.status()}

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.transport.close()
