"""The sender's writes: what it takes, marks, records and recovers, each in few statements.

A row goes ``queued`` → ``sending`` (its attempt and ``sending_at`` committed just before the
Bot API call) → a final status (or back to ``queued`` to retry later). Marks and outcomes of
rows being sent at once are written together (one ``UPDATE … FROM unnest(…)`` each).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.notification import chats, notifications, tickets

STOPPED_EDIT = "the sender stopped during this edit: it is sent again"
STOPPED_SEND = ("the sender stopped during this send: not sent again, as Telegram has no "
                "idempotent send (it may or may not have arrived)")


@dataclass
class Outcome:
    status: str | None  # None: back to queued (retried later)
    message_id: int | None = None
    error: str | None = None
    chat_id: int | None = None
    not_before: datetime | None = None
    attempts: int = 1
    unreachable: str | None = None
    migrated_to: int | None = None
    ticket_photo: str | None = None


async def due(session: AsyncSession, limit: int, busy: Iterable[uuid.UUID]) -> Sequence[Any]:
    """The oldest due queued rows of recipients not being sent to now, with their chat and
    live ticket. The rows are chosen first (queued and due, in id order, up to ``limit``: the
    partial index of queued rows serves it) and only they are joined; joined first, the
    planner could scan every notification and every ticket ever written on each call."""
    busy = list(busy)
    chosen = (select(notifications.c.id, notifications.c.recipient_id,
                     notifications.c.template_key, notifications.c.payload,
                     notifications.c.attempts, notifications.c.registration_id,
                     notifications.c.event_id)
              .where(notifications.c.status == "queued", notifications.c.not_before <= func.now())
              .order_by(notifications.c.id).limit(limit))
    if busy:
        chosen = chosen.where(notifications.c.recipient_id.notin_(busy))
    n = chosen.subquery("n")
    query = (select(n, chats.c.chat_id, chats.c.unreachable,
                    tickets.c.message_id.label("ticket_message_id"),
                    tickets.c.photo.label("ticket_photo"))
             .select_from(n.outerjoin(chats, chats.c.user_id == n.c.recipient_id)
                          .outerjoin(tickets, tickets.c.registration_id == n.c.registration_id))
             .order_by(n.c.id))
    return (await session.execute(query)).all()


async def due_in(session: AsyncSession) -> float | None:
    """Seconds until the earliest queued row is due (negative: overdue); None when no row is
    queued."""
    found = await session.scalar(
        select(func.extract("epoch", func.min(notifications.c.not_before) - func.now()))
        .where(notifications.c.status == "queued"))
    return None if found is None else float(found)


MARK = text(
    "UPDATE notifications AS n SET status = 'sending', attempts = v.attempts, "
    "sending_at = clock_timestamp() "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS int[]), CAST(:first AS boolean[])) "
    "AS v(id, attempts, first) "
    "WHERE n.id = v.id AND n.status = CASE WHEN v.first THEN 'queued' ELSE 'sending' END "
    "RETURNING n.id")


async def mark_sending(session: AsyncSession, items: list[tuple[int, int, bool]]) -> list[bool]:
    """Mark (id, attempt, first attempt?) rows ``sending``; False for a row that was not in
    the expected state (another sender took it): it must not be sent."""
    marked = set((await session.execute(MARK, {
        "ids": [i for i, _, _ in items], "attempts": [a for _, a, _ in items],
        "first": [f for _, _, f in items]})).scalars())
    return [i in marked for i, _, _ in items]


RECORD = text(
    "UPDATE notifications AS n SET status = v.status, attempts = v.attempts, "
    "last_error = v.error, chat_id = v.chat_id, sending_at = NULL, "
    "telegram_message_id = CASE WHEN v.status = 'queued' THEN n.telegram_message_id "
    "ELSE v.message_id END, "
    "sent_at = CASE WHEN v.status = 'queued' THEN n.sent_at ELSE now() END, "
    "not_before = COALESCE(v.not_before, n.not_before) "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:attempts AS int[]), "
    "CAST(:errors AS text[]), CAST(:chats AS bigint[]), CAST(:messages AS bigint[]), "
    "CAST(:not_before AS timestamptz[])) "
    "AS v(id, status, attempts, error, chat_id, message_id, not_before) WHERE n.id = v.id")

TICKETS = text(
    "UPDATE tickets AS t SET message_id = v.message_id, chat_id = v.chat_id, photo = v.photo, "
    "updated_at = now() "
    "FROM unnest(CAST(:regs AS uuid[]), CAST(:messages AS bigint[]), CAST(:chats AS bigint[]), "
    "CAST(:photos AS text[])) AS v(registration_id, message_id, chat_id, photo) "
    "WHERE t.registration_id = v.registration_id")


async def record(session: AsyncSession, done: list[tuple[Any, Outcome]]) -> None:
    """Write the outcomes of several rows: their statuses in one statement, the live tickets'
    message ids in another; chats found, unreachable or migrated (rare) one by one."""
    now = datetime.now(UTC)
    await session.execute(RECORD, {
        "ids": [row.id for row, _ in done],
        "statuses": [o.status or "queued" for _, o in done],
        "attempts": [o.attempts for _, o in done],
        "errors": [o.error for _, o in done],
        "chats": [o.chat_id for _, o in done],
        "messages": [o.message_id for _, o in done],
        "not_before": [None if o.status else (o.not_before or now) for _, o in done]})
    shown = {row.registration_id: (o.message_id, o.chat_id, o.ticket_photo) for row, o in done
             if o.ticket_photo is not None and row.registration_id is not None}
    if shown:
        await session.execute(TICKETS, {
            "regs": list(shown), "messages": [m for m, _, _ in shown.values()],
            "chats": [c for _, c, _ in shown.values()],
            "photos": [p for _, _, p in shown.values()]})
    for row, outcome in done:
        await _chat_changes(session, row, outcome)


async def _chat_changes(session: AsyncSession, row: Any, outcome: Outcome) -> None:
    if row.chat_id is None and outcome.chat_id is not None:  # found at the User service
        await session.execute(pg_insert(chats).values(
            user_id=row.recipient_id, chat_id=outcome.chat_id).on_conflict_do_nothing())
    if outcome.unreachable:
        await session.execute(update(chats).where(chats.c.user_id == row.recipient_id)
                              .values(unreachable=True, unreachable_reason=outcome.unreachable,
                                      user_synced=False, updated_at=func.now()))
    if outcome.migrated_to:
        await session.execute(update(chats).where(chats.c.user_id == row.recipient_id)
                              .values(chat_id=outcome.migrated_to,
                                      migrated_from_chat_id=chats.c.chat_id, user_synced=False,
                                      updated_at=func.now()))


RECOVER = text(
    "UPDATE notifications AS n SET "
    "status = CASE WHEN e.edit THEN 'queued' ELSE 'failed' END, "
    "last_error = CASE WHEN e.edit THEN :edit_error ELSE :send_error END, "
    "sent_at = CASE WHEN e.edit THEN NULL ELSE now() END, "
    "not_before = now(), sending_at = NULL "
    "FROM (SELECT s.id, COALESCE((s.payload ->> 'live')::boolean, false) "
    "      AND t.message_id IS NOT NULL AS edit "
    "      FROM notifications AS s LEFT JOIN tickets AS t "
    "        ON t.registration_id = s.registration_id "
    "      WHERE s.status = 'sending' "
    "        AND s.sending_at < now() - make_interval(secs => :older_than)) AS e "
    "WHERE n.id = e.id RETURNING n.id, e.edit")


async def recover(session: AsyncSession, older_than_seconds: float) -> tuple[int, int]:
    """Rows left ``sending`` by a sender that stopped during the call, ``older_than_seconds``
    ago or more: an edit of a live ticket is queued again (sending it twice changes nothing);
    a new message is failed with the reason, not sent again (at most once). (edits queued
    again, sends failed)."""
    found = (await session.execute(RECOVER, {
        "edit_error": STOPPED_EDIT, "send_error": STOPPED_SEND,
        "older_than": float(older_than_seconds)})).all()
    edits = sum(1 for r in found if r.edit)
    return edits, len(found) - edits
