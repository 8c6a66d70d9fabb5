"""The safety net for expiry: holds past their time that no actor expired (the actor was
deactivated, crashed between timers, or runs on a lost node) are expired by waking the event's
actor, which rebuilds from Postgres and expires them exactly once (conditional updates)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.store import overdue_events
from serve.common.logs import get_logger
from serve.events.reminders import send_due_reminders
from serve.events.service import Inventories

log = get_logger("event.sweep")


async def sweep_once(sessions: async_sessionmaker[AsyncSession], inventory: Inventories,
                     grace_seconds: float) -> int:
    """Expire overdue holds of every event that has some; returns how many were expired."""
    async with sessions() as session:
        event_ids = await overdue_events(session, grace_seconds)
    expired = 0
    for event_id in event_ids:
        expired += int(await inventory.call(event_id, "expire_due") or 0)
    return expired


async def sweep_forever(sessions: async_sessionmaker[AsyncSession], inventory: Inventories,
                        interval_seconds: float, reminder_offsets: list[int]) -> None:
    """The event service's background loop: overdue holds, then due reminders."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            count = await sweep_once(sessions, inventory, interval_seconds)
            if count:
                log.warning("the sweep expired %d overdue reservation(s)", count)
        except Exception:
            log.exception("reservation sweep failed")
        try:
            await send_due_reminders(sessions, reminder_offsets)
        except Exception:
            log.exception("sending reminders failed")
