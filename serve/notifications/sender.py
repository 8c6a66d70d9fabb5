"""The sender: drains queued notifications to Telegram within its limits.

One sender is active per cluster, as with the outbox relay: a drain holds a per-schema advisory
transaction lock, so replicas that do not get it wait for the next round. A drain takes the
oldest due rows (``FOR UPDATE SKIP LOCKED``), sends each recipient's messages in order and
different recipients concurrently, every send behind the cluster-wide limiter, and records
each outcome in the same transaction. Without a bot token messages are written to the log
and marked ``logged``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import Settings, schema_of
from serve.common.logs import get_logger
from serve.common.retry import backoff
from serve.notifications.limiter import Limiter, wait_for_slot
from serve.notifications.telegram import BotGateway, Failure
from storage.notification import chats, notifications, tickets

log = get_logger("notification.sender")

MAX_ATTEMPTS = 5
CONCURRENT_CHATS = 64  # recipients whose messages are in flight at once
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
class Outcome:
    status: str | None  # None: stays queued (retried later)
    message_id: int | None = None
    error: str | None = None
    chat_id: int | None = None
    not_before: datetime | None = None
    attempts: int = 1
    unreachable: str | None = None
    migrated_to: int | None = None
    ticket_photo: str | None = None


@dataclass
class SenderStats:
    sent: int = 0
    logged: int = 0
    failed: int = 0
    blocked: int = 0
    retried_after: int = 0
    last_error: str | None = None
    by_status: dict[str, int] = field(default_factory=dict)


class Sender:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                 bot: BotGateway | None, limiter: Limiter,
                 resolve_chat: ChatResolver | None = None) -> None:
        self.sessions = sessions
        self.settings = settings
        self.bot = bot
        self.limiter = limiter
        self.resolve_chat = resolve_chat
        self.batch_size = min(settings.notification_batch_size, 1000)
        self.poll_seconds = settings.notification_poll_seconds
        self.lock_key = zlib.crc32(f"afisha-sender:{schema_of('notification')}".encode())
        self.stats = SenderStats()
        self._concurrency = asyncio.Semaphore(CONCURRENT_CHATS)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # --- the loop ---
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notification-sender")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                done = await self.drain_once()
                failures = 0
            except Exception as exc:
                failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("sender drain failed (%d): %s", failures, self.stats.last_error)
                await asyncio.sleep(backoff(failures, 0.2))
                continue
            if done < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def drain_once(self) -> int:
        """Deliver one batch of due rows; how many were settled (0 without the lock)."""
        async with self.sessions() as session, session.begin():
            if not await session.scalar(select(func.pg_try_advisory_xact_lock(self.lock_key))):
                return 0
            rows = (await session.execute(
                select(notifications.c.id, notifications.c.recipient_id,
                       notifications.c.template_key, notifications.c.payload,
                       notifications.c.attempts, notifications.c.registration_id,
                       notifications.c.event_id, chats.c.chat_id, chats.c.unreachable,
                       tickets.c.message_id.label("ticket_message_id"),
                       tickets.c.photo.label("ticket_photo"))
                .select_from(notifications
                             .outerjoin(chats, chats.c.user_id == notifications.c.recipient_id)
                             .outerjoin(tickets, tickets.c.registration_id
                                        == notifications.c.registration_id))
                .where(notifications.c.status == "queued",
                       notifications.c.not_before <= func.now())
                .order_by(notifications.c.id).limit(self.batch_size)
                .with_for_update(of=notifications, skip_locked=True))).all()
            if not rows:
                return 0
            by_recipient: dict[uuid.UUID, list[Any]] = {}
            for row in rows:
                by_recipient.setdefault(row.recipient_id, []).append(row)
            results = await asyncio.gather(*(self._send_all(group)
                                             for group in by_recipient.values()))
            for group, outcomes in zip(by_recipient.values(), results, strict=True):
                for row, outcome in zip(group, outcomes, strict=True):
                    await self._record(session, row, outcome)
        return len(rows)

    async def _send_all(self, rows: list[Any]) -> list[Outcome]:
        """One recipient's messages, in order (a live ticket's edits must not overtake)."""
        async with self._concurrency:
            return await self._send_group(rows)

    async def _send_group(self, rows: list[Any]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        chat_id: int | None = rows[0].chat_id
        unreachable = bool(rows[0].unreachable)
        message_ids: dict[Any, int | None] = {}
        photos: dict[Any, str | None] = {}
        if chat_id is None and self.resolve_chat is not None and self.bot is not None:
            with contextlib.suppress(Exception):
                chat_id = await self.resolve_chat(rows[0].recipient_id)
        for row in rows:
            if row.registration_id is not None and row.registration_id not in message_ids:
                message_ids[row.registration_id] = row.ticket_message_id
                photos[row.registration_id] = row.ticket_photo
            if unreachable:
                outcomes.append(Outcome("blocked", error="the chat is unreachable"))
                continue
            outcome = await self._send_one(row, chat_id, message_ids.get(row.registration_id),
                                           photos.get(row.registration_id))
            if outcome.unreachable:
                unreachable = True
            if outcome.migrated_to:
                chat_id = outcome.migrated_to
            if outcome.ticket_photo is not None and outcome.message_id is not None:
                message_ids[row.registration_id] = outcome.message_id
                photos[row.registration_id] = outcome.ticket_photo
            outcomes.append(outcome)
        return outcomes

    async def _send_one(self, row: Any, chat_id: int | None, ticket_message_id: int | None,
                        shown_photo: str | None) -> Outcome:
        payload: dict[str, Any] = row.payload
        text: str = payload["text"]
        if self.bot is None:
            log.info("telegram (not configured) -> user %s [%s]: %s", row.recipient_id,
                     row.template_key, text)
            return Outcome("logged", chat_id=chat_id)
        if chat_id is None:
            return Outcome("suppressed", error="no Telegram chat linked")
        attempts = row.attempts
        chat = chat_id
        while True:
            attempts += 1
            await wait_for_slot(self.limiter, chat)
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
        photo = ticket_photo(self.settings, kind, str(row.registration_id), str(row.event_id))
        if ticket_message_id is None:
            message_id = await self.bot.send_photo(chat, photo, text, buttons,
                                                   bool(payload.get("protect", True)))
        elif shown_photo != kind:
            await self.bot.edit_photo(chat, ticket_message_id, photo, text, buttons)
            message_id = ticket_message_id
        else:
            await self.bot.edit_caption(chat, ticket_message_id, text, buttons)
            message_id = ticket_message_id
        return Outcome("sent", message_id=message_id, chat_id=chat, attempts=attempts,
                       migrated_to=migrated, ticket_photo=kind)

    async def _record(self, session: AsyncSession, row: Any, outcome: Outcome) -> None:
        values: dict[str, Any] = {"attempts": outcome.attempts, "last_error": outcome.error,
                                  "chat_id": outcome.chat_id}
        if outcome.status is None:
            values["not_before"] = outcome.not_before or datetime.now(UTC)
        else:
            values.update(status=outcome.status, telegram_message_id=outcome.message_id,
                          sent_at=func.now())
            self.stats.by_status[outcome.status] = self.stats.by_status.get(outcome.status,
                                                                            0) + 1
        await session.execute(update(notifications).where(notifications.c.id == row.id)
                              .values(**values))
        if row.chat_id is None and outcome.chat_id is not None:  # found at the User service
            await session.execute(pg_insert(chats).values(
                user_id=row.recipient_id, chat_id=outcome.chat_id).on_conflict_do_nothing())
        if outcome.unreachable:
            await session.execute(update(chats).where(chats.c.user_id == row.recipient_id)
                                  .values(unreachable=True, unreachable_reason=outcome.unreachable,
                                          updated_at=func.now()))
        if outcome.migrated_to:
            await session.execute(update(chats).where(chats.c.user_id == row.recipient_id)
                                  .values(chat_id=outcome.migrated_to,
                                          migrated_from_chat_id=chats.c.chat_id,
                                          updated_at=func.now()))
        if outcome.ticket_photo is not None and row.registration_id is not None:
            await session.execute(update(tickets)
                                  .where(tickets.c.registration_id == row.registration_id)
                                  .values(message_id=outcome.message_id, chat_id=outcome.chat_id,
                                          photo=outcome.ticket_photo, updated_at=func.now()))
        if outcome.status == "sent":
            self.stats.sent += 1
        elif outcome.status == "logged":
            self.stats.logged += 1
        elif outcome.status == "failed":
            self.stats.failed += 1
            self.stats.last_error = outcome.error
        elif outcome.status == "blocked":
            self.stats.blocked += 1
