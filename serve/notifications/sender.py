"""The sender: drains queued notifications to Telegram within its limits.

One sender is active per cluster, as with the outbox relay: a drain holds a per-schema advisory
lock on its own connection, so replicas that do not get it wait for the next round. A drain
keeps up to ``AFISHA_NOTIFICATION_BATCH_SIZE`` rows in flight (taking more whenever half of
them are settled, so the limiter's budget is never left unused between batches), sends each
recipient's messages in order and different recipients concurrently, every send behind the
cluster-wide limiter. Just before each Bot API call the row is marked ``sending`` with its
attempt in a committed transaction (marks of concurrent sends are written together, while the
send waits for its slot); its outcome is committed right after the call (outcomes written
together too). Without a bot token messages are written to the log and marked ``logged``.

Between drains: after one that settled rows the sender looks again in
``notification_poll_seconds``. At rest (nothing settled) it waits until the earliest queued
row is due, at most ``listening_poll_seconds``, and wakes at once when a statement queues rows
(the ``notification_0005`` trigger's NOTIFY). Without its LISTEN connection it polls every
``notification_poll_seconds`` again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import Settings, schema_of
from messaging.listen import keep_listening
from messaging.relay import asyncpg_dsn
from serve.common.logs import get_logger
from serve.common.retry import backoff
from serve.notifications import deliveries
from serve.notifications.deliveries import Outcome
from serve.notifications.grouped import GroupWriter
from serve.notifications.limiter import Limiter, wait_for_slot
from serve.notifications.telegram import BotGateway, Failure
from storage.notification import queued_channel

log = get_logger("notification.sender")

MAX_ATTEMPTS = 5
CONCURRENT_CHATS = 64  # recipients whose messages are in flight at once
# A row still ``sending`` this long after its mark was left by a sender that stopped.
SENDING_TIMEOUT = 60.0
NO_CHAT = "no Telegram chat linked"
# The user's Telegram chat when the notification service has none yet (the User service).
ChatResolver = Callable[[uuid.UUID], Awaitable[int | None]]


def card_png(width: int = 640, height: int = 360, rgb: tuple[int, int, int] = (32, 45, 80)
             ) -> bytes:
    """A plain card image: the photo a ticket shows until it has its QR code."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


CARD = card_png()


def ticket_photo(settings: Settings, kind: str, registration_id: str, event_id: str) -> bytes:
    """The QR of the ticket code once paid (or free), else the card."""
    if kind == "qr":
        from serve.events.tickets import qr_png, ticket_code

        try:
            return qr_png(ticket_code(settings, registration_id, event_id))
        except LookupError:  # no signing secret configured: the card stands in
            log.warning("no signing secret: ticket %s shows the card", registration_id)
    return CARD


@dataclass
class SenderStats:
    sent: int = 0
    logged: int = 0
    failed: int = 0
    blocked: int = 0
    retried_after: int = 0
    last_error: str | None = None
    by_status: dict[str, int] = field(default_factory=dict)


class Taken(Exception):
    """The row was no longer queued when it was to be marked ``sending``: another sender has
    it, so this one must not send it."""


class Sender:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 bot: BotGateway | None, limiter: Limiter,
                 resolve_chat: ChatResolver | None = None,
                 sending_timeout_seconds: float = SENDING_TIMEOUT) -> None:
        self.sessions = sessions
        self.settings = settings
        self.bot = bot
        self.limiter = limiter
        self.resolve_chat = resolve_chat
        self.sending_timeout = sending_timeout_seconds
        self.window = min(settings.notification_batch_size, 1000)
        self.poll_seconds = settings.notification_poll_seconds
        self.listening_poll = settings.listening_poll_seconds
        self.listening = False
        self.locked_out = False  # the last drain found another sender holding the lock
        self.lock_key = zlib.crc32(f"afisha-sender:{schema_of('notification')}".encode())
        self.stats = SenderStats()
        self._concurrency = asyncio.Semaphore(CONCURRENT_CHATS)
        self._marks: GroupWriter[tuple[int, int, bool], bool] = GroupWriter(self._write_marks)
        self._outcomes: GroupWriter[tuple[Any, Outcome], None] = GroupWriter(
            self._write_outcomes)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.resting = False  # waiting after a drain that settled nothing
        self._queued = False  # rows were announced since the last drain began

    # --- the loop ---
    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(), name="notification-sender"),
                           asyncio.create_task(self._listen(), name="notification-listen")]

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            self._queued = False
            try:
                settled = await self.drain_once()
                failures = 0
            except Exception as exc:
                failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("sender drain failed (%d): %s", failures, self.stats.last_error)
                await asyncio.sleep(backoff(failures, 0.2))
                continue
            wait = self.poll_seconds
            if not settled and self.listening:
                self.resting = True  # from here an announcement wakes the loop
                if self._queued:
                    wait = 0.0
                elif self.locked_out:  # the sender draining now takes what becomes due
                    wait = self.listening_poll
                else:
                    wait = await self._until_due()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            finally:
                self.resting = False

    async def _until_due(self) -> float:
        """Seconds until the earliest queued row is due, at most ``listening_poll``."""
        try:
            async with self.sessions() as session:
                due_in = await deliveries.due_in(session)
        except Exception as exc:
            log.warning("reading the next due notification failed: %s", exc)
            return self.poll_seconds
        return self.listening_poll if due_in is None else min(max(due_in, 0.0),
                                                              self.listening_poll)

    async def _listen(self) -> None:
        def up() -> None:
            self.listening = True
            self._wake.set()

        def down() -> None:
            self.listening = False
            self._wake.set()

        def announced(_payload: str) -> None:
            self._queued = True
            if self.resting:
                self._wake.set()

        await keep_listening(
            asyncpg_dsn(self.settings.database_url_for("notification")),
            queued_channel(schema_of("notification")), announced, on_up=up, on_down=down,
            keepalive_seconds=min(self.listening_poll, 5.0), retry_seconds=self.poll_seconds,
            log=log)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def drain_once(self) -> int:
        """Deliver the due rows until none is left, keeping up to ``window`` rows in flight;
        how many were settled (0 when another sender holds the lock). Rows a stopped sender
        left ``sending`` are recovered first."""
        engine = self.sessions.kw["bind"]
        async with engine.connect() as conn:
            lock = await conn.execution_options(isolation_level="AUTOCOMMIT")
            self.locked_out = not await lock.scalar(
                select(func.pg_try_advisory_lock(self.lock_key)))
            if self.locked_out:
                return 0
            try:
                async with self.sessions() as session, session.begin():
                    edits, sends = await deliveries.recover(session, self.sending_timeout)
                if edits or sends:
                    log.warning("recovered rows a stopped sender left sending: %d edits queued "
                                "again, %d sends failed (outcome unknown)", edits, sends)
                return await self._pipeline()
            finally:
                await lock.scalar(select(func.pg_advisory_unlock(self.lock_key)))

    async def _pipeline(self) -> int:
        """Take due rows whenever half the window is free, so sends never wait for a batch
        to finish; each recipient's rows go in order, one task per recipient."""
        settled = 0
        busy: dict[uuid.UUID, asyncio.Task[int]] = {}
        out = 0
        exhausted = False
        try:
            while True:
                if out <= self.window // 2 and not exhausted:
                    async with self.sessions() as session:
                        rows = await deliveries.due(session, self.window - out, busy)
                    groups: dict[uuid.UUID, list[Any]] = {}
                    for row in rows:
                        groups.setdefault(row.recipient_id, []).append(row)
                    for recipient, group in groups.items():
                        busy[recipient] = asyncio.create_task(self._send_all(group))
                        out += len(group)
                    exhausted = not rows
                if not busy:
                    return settled
                finished, _ = await asyncio.wait(busy.values(),
                                                 return_when=asyncio.FIRST_COMPLETED)
                for recipient in [r for r, t in busy.items() if t in finished]:
                    count = busy.pop(recipient).result()
                    out -= count
                    settled += count
                    exhausted = False
        finally:
            for task in busy.values():
                task.cancel()

    async def _send_all(self, rows: list[Any]) -> int:
        """One recipient's messages, in order (a live ticket's edits must not overtake); the
        outcomes are committed before the recipient's next rows can be taken."""
        async with self._concurrency:
            writes = [asyncio.ensure_future(self._outcomes.submit((row, outcome)))
                      async for row, outcome in self._send_group(rows)]
        await asyncio.gather(*writes)
        return len(rows)

    async def _send_group(self, rows: list[Any]) -> AsyncIterator[tuple[Any, Outcome]]:
        chat_id: int | None = rows[0].chat_id
        unreachable = bool(rows[0].unreachable)
        message_ids: dict[Any, int | None] = {}
        photos: dict[Any, str | None] = {}
        if chat_id is None and self.resolve_chat is not None and self.bot is not None:
            with contextlib.suppress(Exception):
                chat_id = await self.resolve_chat(rows[0].recipient_id)
        stale = superseded(rows)
        for row in rows:
            if row.id in stale:
                yield row, Outcome("suppressed", error=SUPERSEDED, attempts=row.attempts)
                continue
            if row.registration_id is not None and row.registration_id not in message_ids:
                message_ids[row.registration_id] = row.ticket_message_id
                photos[row.registration_id] = row.ticket_photo
            if unreachable:
                yield row, Outcome("blocked", error="the chat is unreachable",
                                   attempts=row.attempts)
                continue
            try:
                outcome = await self._send_one(row, chat_id, message_ids.get(row.registration_id),
                                               photos.get(row.registration_id))
            except Taken:
                continue
            if outcome.unreachable:
                unreachable = True
            if outcome.migrated_to:
                chat_id = outcome.migrated_to
            if outcome.ticket_photo is not None and outcome.message_id is not None:
                message_ids[row.registration_id] = outcome.message_id
                photos[row.registration_id] = outcome.ticket_photo
            yield row, outcome

    async def _mark(self, row: Any, attempt: int, first: bool) -> None:
        if not await self._marks.submit((row.id, attempt, first)):
            raise Taken(row.id)

    async def _send_one(self, row: Any, chat_id: int | None, ticket_message_id: int | None,
                        shown_photo: str | None) -> Outcome:
        payload: dict[str, Any] = row.payload
        text: str = payload["text"]
        if self.bot is None:
            # One line a message: inside a Serve replica every line written costs a stack walk.
            log.info("telegram (not configured) -> user %s [%s]: %s", row.recipient_id,
                     row.template_key, " | ".join(text.splitlines()))
            return Outcome("logged", chat_id=chat_id, attempts=row.attempts)
        if chat_id is None:
            return Outcome("suppressed", error=NO_CHAT, attempts=row.attempts)
        attempts = row.attempts
        first = True
        chat = chat_id
        while True:
            attempts += 1
            await wait_for_slot(self.limiter, chat, meanwhile=functools.partial(
                self._mark, row, attempts, first))
            first = False
            try:
                return await self._deliver(row, chat, payload, ticket_message_id, shown_photo,
                                           attempts)
            except Failure as fail:
                if fail.verdict == "retry_after":
                    self.stats.retried_after += 1
                    log.warning("429 from Telegram: pausing the bot %.1f s", fail.retry_after)
                    await self.limiter.pause(fail.retry_after)
                    attempts -= 1  # a 429 is Telegram's pacing, not a failed attempt
                    continue
                if fail.verdict == "migrated" and fail.migrate_to_chat_id:
                    log.info("chat %s migrated to %s", chat, fail.migrate_to_chat_id)
                    chat = fail.migrate_to_chat_id
                    continue
                if fail.verdict == "blocked":
                    return Outcome("blocked", error=fail.description, chat_id=chat,
                                   attempts=attempts, unreachable=fail.description)
                if fail.verdict == "resend" and ticket_message_id is not None:
                    ticket_message_id = None  # the live message is gone: send it anew
                    continue
                if fail.verdict == "sent":  # "message is not modified"
                    return Outcome("sent", message_id=ticket_message_id, chat_id=chat,
                                   attempts=attempts)
                if fail.verdict == "retry" and attempts < MAX_ATTEMPTS:
                    wait = backoff(attempts, 0.5, cap=30.0)
                    log.warning("sending %s timed out or failed (%s); retrying in %.1f s",
                                row.id, fail.description, wait)
                    await asyncio.sleep(min(wait, 2.0))
                    if wait > 2.0:  # long waits leave the row queued for a later drain
                        return Outcome(None, error=fail.description, chat_id=chat,
                                       attempts=attempts,
                                       not_before=datetime.now(UTC) + timedelta(seconds=wait))
                    continue
                return Outcome("failed", error=fail.description, chat_id=chat, attempts=attempts)

    async def _deliver(self, row: Any, chat: int, payload: dict[str, Any],
                       ticket_message_id: int | None, shown_photo: str | None,
                       attempts: int) -> Outcome:
        assert self.bot is not None
        text: str = payload["text"]
        buttons = payload.get("buttons")
        migrated = chat if chat != row.chat_id else None
        if not payload.get("live"):
            message_id = await self.bot.send_text(chat, text, buttons or None)
            return Outcome("sent", message_id=message_id, chat_id=chat, attempts=attempts,
                           migrated_to=migrated)
        kind = str(payload.get("photo") or "card")
        if ticket_message_id is not None and shown_photo == kind:
            await self.bot.edit_caption(chat, ticket_message_id, text, buttons)
            return Outcome("sent", message_id=ticket_message_id, chat_id=chat,
                           attempts=attempts, migrated_to=migrated, ticket_photo=kind)
        photo = ticket_photo(self.settings, kind, str(row.registration_id), str(row.event_id))
        if ticket_message_id is None:
            message_id = await self.bot.send_photo(chat, photo, text, buttons,
                                                   bool(payload.get("protect", True)))
        else:
            await self.bot.edit_photo(chat, ticket_message_id, photo, text, buttons)
            message_id = ticket_message_id
        return Outcome("sent", message_id=message_id, chat_id=chat, attempts=attempts,
                       migrated_to=migrated, ticket_photo=kind)

    # --- writes (group-committed) ---
    async def _write_marks(self, items: list[tuple[int, int, bool]]) -> list[bool]:
        async with self.sessions() as session, session.begin():
            return await deliveries.mark_sending(session, items)

    async def _write_outcomes(self, done: list[tuple[Any, Outcome]]) -> list[None]:
        async with self.sessions() as session, session.begin():
            await deliveries.record(session, done)
        for _, outcome in done:
            self._count(outcome)
        return [None] * len(done)

    def _count(self, outcome: Outcome) -> None:
        if outcome.status is not None:
            self.stats.by_status[outcome.status] = self.stats.by_status.get(outcome.status,
                                                                            0) + 1
        if outcome.status == "sent":
            self.stats.sent += 1
        elif outcome.status == "logged":
            self.stats.logged += 1
        elif outcome.status == "failed":
            self.stats.failed += 1
            self.stats.last_error = outcome.error
        elif outcome.status == "blocked":
            self.stats.blocked += 1


SUPERSEDED = "superseded: a later version of this live ticket was queued before it was sent"


def superseded(rows: list[Any]) -> set[Any]:
    """Ids of live-ticket rows that a later row of the same ticket, taken in the same batch,
    makes pointless: only the last version is shown (sent, or edited into the message)."""
    seen: set[Any] = set()
    stale: set[Any] = set()
    for row in reversed(rows):
        if row.template_key != "ticket" or not (row.payload or {}).get("live"):
            continue
        if row.registration_id in seen:
            stale.add(row.id)
        seen.add(row.registration_id)
    return stale
