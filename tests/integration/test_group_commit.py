"""The inventory hosts' one-statement group commit against the real Postgres (no Ray)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, insert, select

from actors.commit import GroupCommit
from actors.store import NewRegistration
from cluster.settings import Settings
from messaging.outbox import channel_of, outbox_for
from storage.engine import create_engine, sessionmaker
from storage.event import (
    events,
    idempotency_keys,
    inventory_fences,
    registrations,
    reservations,
    ticket_types,
)

EPOCH = 7


@pytest.fixture
async def world(migrated_settings: Settings) -> Any:
    engine = create_engine(migrated_settings, "event")
    sessions = sessionmaker(engine)
    event_id, tt = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC)
    async with sessions.begin() as s:
        await s.execute(insert(events).values(
            id=event_id, organization_id="org", title="Show", starts_at=now + timedelta(7),
            ends_at=now + timedelta(8), visibility="public", participants_visibility="open",
            status="published", created_by="owner"))
        await s.execute(insert(ticket_types).values(
            id=tt, event_id=event_id, name="GA", price=1000, currency="RUB", quantity=10))
        await s.execute(insert(inventory_fences).values(scope=f"event:{event_id}", epoch=EPOCH,
                                                        owner="t"))
    group = GroupCommit(migrated_settings)
    yield group, sessions, event_id, tt
    await group.close()
    await engine.dispose()


def decision(event_id: str, tt: str, key: str | None = None,
             held: bool = True) -> NewRegistration:
    return NewRegistration(
        registration_id=str(uuid.uuid4()), reservation_id=str(uuid.uuid4()) if held else None,
        event_id=event_id, organization_id="org", ticket_type_id=tt, user_id=f"u-{event_id}",
        quantity=1,
        status="pending_payment" if held else "confirmed", payment_mode="full",
        amount=1000 if held else 0, currency="RUB", prepayment_amount=None,
        expires_at=datetime.now(UTC) + timedelta(minutes=15) if held else None,
        idempotency_key=key, correlation_id="cid-1")


async def counts(sessions: Any, event_id: str) -> tuple[int, int, int, int]:
    outbox = outbox_for("event")
    async with sessions() as s:
        regs = await s.scalar(select(func.count()).select_from(registrations)
                              .where(registrations.c.event_id == event_id))
        holds = await s.scalar(select(func.count()).select_from(reservations)
                               .where(reservations.c.event_id == event_id))
        keys = await s.scalar(select(func.count()).select_from(idempotency_keys).where(
            idempotency_keys.c.user_id == f"u-{event_id}"))
        sent = await s.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.type == "registration.created", outbox.c.aggregate_id == event_id))
    return int(regs or 0), int(holds or 0), int(keys or 0), int(sent or 0)


async def test_a_batch_is_written_whole_and_wakes_the_relay(world: Any,
                                                            migrated_settings: Settings) -> None:
    group, sessions, event_id, tt = world
    scope = f"event:{event_id}"
    woken = asyncio.Event()
    listener = await asyncpg.connect(
        migrated_settings.database_url_for("event").replace("+asyncpg", ""))
    await listener.add_listener(channel_of("event"), lambda *_: woken.set())
    batch = [decision(event_id, tt, key="k1"), decision(event_id, tt, key=None),
             decision(event_id, tt, key="k3", held=False)]
    try:
        held, kind_ok = await group.write(batch, [scope], EPOCH, [event_id], hot=False)
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await listener.close()
    assert (held, kind_ok) == ({scope}, {event_id})
    assert await counts(sessions, event_id) == (3, 2, 2, 3)
    async with sessions() as s:
        outbox = outbox_for("event")
        envelope = await s.scalar(select(outbox.c.envelope).where(outbox.c.aggregate_id == event_id)
                                  .order_by(outbox.c.id).limit(1))
    assert envelope["data"]["registration_id"] == batch[0].registration_id
    assert envelope["correlation_id"] == "cid-1"


async def test_a_stale_epoch_or_another_kind_writes_nothing(world: Any) -> None:
    group, sessions, event_id, tt = world
    scope = f"event:{event_id}"
    held, kind_ok = await group.write([decision(event_id, tt)], [scope], EPOCH - 1,
                                      [event_id], hot=False)
    assert (held, kind_ok) == (set(), {event_id})
    held, kind_ok = await group.write([decision(event_id, tt)], [scope], EPOCH, [event_id],
                                      hot=True)
    assert (held, kind_ok) == ({scope}, set())
    assert await counts(sessions, event_id) == (0, 0, 0, 0)


async def test_a_reused_key_fails_the_batch_with_nothing_written(world: Any) -> None:
    group, sessions, event_id, tt = world
    scope = f"event:{event_id}"
    await group.write([decision(event_id, tt, key="same")], [scope], EPOCH, [event_id], False)
    with pytest.raises(asyncpg.UniqueViolationError):
        await group.write([decision(event_id, tt), decision(event_id, tt, key="same")],
                          [scope], EPOCH, [event_id], False)
    assert await counts(sessions, event_id) == (1, 1, 1, 1)


async def waiting_on_a_lock(admin: asyncpg.Connection, not_pid: int | None = None) -> int:
    """The pid of the group commit's backend once it waits for a lock."""
    for _ in range(500):
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'afisha-event-commit' "
            "AND wait_event_type = 'Lock' AND pid IS DISTINCT FROM $1", not_pid)
        if pid:
            return int(pid)
        await asyncio.sleep(0.01)
    raise AssertionError("the group commit never waited for the fence lock")


async def test_a_connection_ended_mid_statement_is_replaced_and_the_batch_written_once(
        world: Any, migrated_settings: Settings) -> None:
    group, sessions, event_id, tt = world
    scope = f"event:{event_id}"
    url = migrated_settings.database_url_for("event").replace("+asyncpg", "")
    admin, locker = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        lock = locker.transaction()
        await lock.start()
        await locker.execute(f"SELECT 1 FROM {inventory_fences.fullname} WHERE scope = $1 "
                             "FOR UPDATE", scope)
        writing = asyncio.create_task(group.write([decision(event_id, tt, key="k")], [scope],
                                                  EPOCH, [event_id], False))
        first = await waiting_on_a_lock(admin)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        await waiting_on_a_lock(admin, not_pid=first)  # written again on a new connection
        await lock.commit()
        held, _ = await asyncio.wait_for(writing, 10)
    finally:
        await admin.close()
        await locker.close()
    assert held == {scope}
    assert group.reconnects == 1
    assert await counts(sessions, event_id) == (1, 1, 1, 1)
