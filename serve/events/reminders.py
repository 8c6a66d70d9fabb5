"""event.reminder at the configured offsets before an event starts, each exactly once.

A reminder for offset ``m`` is due while the event starts within ``m`` minutes but not within
the next smaller offset (so an event created an hour before it starts gets the one-hour
reminder, not the day-before one too). ``reminders_sent`` (primary key event + offset) is
written in the same transaction as the outbox row, so a reminder is published at most once even
with several replicas sweeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from messaging.outbox import UnitOfWork
from storage.event import events, reminders_sent


async def send_due_reminders(sessions: async_sessionmaker[AsyncSession], offsets: list[int],
                             now: datetime | None = None) -> int:
    """Publish every due reminder; returns how many were published."""
    now = now or datetime.now(UTC)
    ordered = sorted(set(offsets), reverse=True)
    sent = 0
    for i, offset in enumerate(ordered):
        smaller = ordered[i + 1] if i + 1 < len(ordered) else 0
        already = exists().where(reminders_sent.c.event_id == events.c.id,
                                 reminders_sent.c.offset_minutes == offset)
        due = (select(events.c.id, events.c.organization_id, events.c.title,
                      events.c.starts_at)
               .where(events.c.status == "published",
                      and_(events.c.starts_at > now + timedelta(minutes=smaller),
                           events.c.starts_at <= now + timedelta(minutes=offset)),
                      ~already)
               .limit(500))
        async with UnitOfWork(sessions, "event") as uow:
            for row in (await uow.session.execute(due)).all():
                claimed = await uow.session.execute(
                    insert(reminders_sent).values(event_id=row.id, offset_minutes=offset)
                    .on_conflict_do_nothing().returning(reminders_sent.c.event_id))
                if claimed.first() is None:
                    continue
                uow.publish("event.reminder", {
                    "event_id": row.id, "organization_id": row.organization_id,
                    "title": row.title, "starts_at": row.starts_at.isoformat(),
                    "offset_minutes": offset}, aggregate_id=row.id)
                sent += 1
    return sent
