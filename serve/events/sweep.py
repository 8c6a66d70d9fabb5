"""The safety net for expiry: holds past their time that no actor expired (the actor was
deactivated, crashed between timers, or runs on a lost node) are expired by waking the event's
actor, which rebuilds from Postgres and expires them exactly once (conditional updates).

A woken owner's own timers and the sweep's call both expire what is due, one after the other
under the owner's lock; whichever runs first does it. The sweep therefore counts the overdue
holds it found that have expired once their owners answered, not what its own call changed."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.store import count_expired, overdue_holds
from serve.common.logs import get_logger
from serve.events.reminders import send_due_reminders
from serve.events.service import Inventories

log = get_logger("event.sweep")


async def sweep_once(sessions: async_sessionmaker[AsyncSession], inventory: Inventories,
                     grace_seconds: float) -> int:
    """Expire overdue holds of every event that has some; returns how many of the overdue
    holds found are expired afterwards."""
    async with sessions() as session:
        overdue = await overdue_holds(session, grace_seconds)
    if not overdue:
        return 0
    for event_id in overdue:
        await inventory.call(event_id, "expire_due")
    async with sessions() as session:
        return await count_expired(session, [h for holds in overdue.values() for h in holds])


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
