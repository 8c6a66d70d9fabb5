"""Inventory hosts and their event owners against the real Postgres and the shared Ray session."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text

from actors.client import InventoryClient
from actors.host import InventoryHost
from actors.shards import host_index
from cluster.settings import Settings
from messaging.outbox import outbox_for
from serve.common.errors import Conflict, ServiceUnavailable
from storage.engine import create_engine, sessionmaker
from storage.event import events, registrations, reservations, ticket_types

pytestmark = pytest.mark.usefixtures("ray_session")


class Db:
    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings, "event")
        self.sessions = sessionmaker(self.engine)

    async def event(self, quantity: int, price: int = 1000, limit: int | None = None,
                    event_id: str | None = None) -> tuple[str, str]:
        event_id, tt = event_id or str(uuid.uuid4()), str(uuid.uuid4())
        now = datetime.now(UTC)
        async with self.sessions.begin() as s:
            await s.execute(insert(events).values(
                id=event_id, organization_id="org", title="Hot show", starts_at=now + timedelta(7),
                ends_at=now + timedelta(8), visibility="public", participants_visibility="open",
                status="published", created_by="owner"))
            await s.execute(insert(ticket_types).values(
                id=tt, event_id=event_id, name="GA", price=price, currency="RUB",
                quantity=quantity, per_user_limit=limit))
        return event_id, tt

    async def statuses(self, event_id: str) -> Counter[str]:
        async with self.sessions() as s:
            rows = await s.execute(select(registrations.c.status,
                                          func.sum(registrations.c.quantity))
                                   .where(registrations.c.event_id == event_id)
                                   .group_by(registrations.c.status))
            return Counter({status: int(n) for status, n in rows.all()})

    async def transactions(self, event_id: str) -> int:
        """How many transactions wrote this event's registrations (xmin per row)."""
        async with self.sessions() as s:
            return int(await s.scalar(text(
                "SELECT count(DISTINCT xmin::text) FROM registrations WHERE event_id = :e"),
                {"e": event_id}))

    async def held(self, event_id: str) -> int:
        async with self.sessions() as s:
            return int(await s.scalar(select(func.coalesce(func.sum(reservations.c.quantity), 0))
                                      .where(reservations.c.event_id == event_id,
                                             reservations.c.status == "held")))

    async def published(self, event_type: str, event_id: str) -> int:
        outbox = outbox_for("event")
        async with self.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(outbox).where(
                outbox.c.type == event_type, outbox.c.aggregate_id == event_id)))


@pytest.fixture
async def db(migrated_settings: Settings) -> Any:
    database = Db(migrated_settings)
    yield database
    await database.engine.dispose()


def client(settings: Settings, **values: Any) -> InventoryClient:
    return InventoryClient(settings.model_copy(update=values).to_runtime())


async def attempt(inv: InventoryClient, event_id: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return await inv.call(event_id, "reserve", *args, **kwargs)
    except Conflict as exc:
        return exc


async def batched(inv: InventoryClient, event_id: str, user_id: str, tt: str, key: str) -> Any:
    """Through the caller-side batcher, as the gateway reserves."""
    try:
        return await inv.reserve(event_id, user_id, tt, 1, "full", key, "cid")
    except Conflict as exc:
        return exc


@pytest.mark.parametrize("path", ["one call per request", "batched calls"])
async def test_500_concurrent_registrations_for_100_seats(migrated_settings: Settings,
                                                         db: Db, path: str) -> None:
    event_id, tt = await db.event(quantity=100)
    inv = client(migrated_settings)
    if path == "batched calls":
        requests = [batched(inv, event_id, f"user-{i}", tt, f"k{i}") for i in range(500)]
    else:
        requests = [attempt(inv, event_id, f"user-{i}", tt, 1) for i in range(500)]
    results = await asyncio.gather(*requests)
    won = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if isinstance(r, Conflict)]
    assert len(won) == 100 and len(lost) == 400
    assert {e.slug for e in lost} == {"sold-out"}
    assert len({r["id"] for r in won}) == 100
    assert all(r["status"] == "pending_payment" and r["reservation"] for r in won)
    assert await db.statuses(event_id) == Counter({"pending_payment": 100})
    assert await db.held(event_id) == 100
    assert await db.published("registration.created", event_id) == 100
    assert await db.transactions(event_id) < 100  # group commit: batches of several
    counts = await inv.call(event_id, "ready")
    assert counts["ticket_types"][tt] == {"quantity": 100, "confirmed": 0, "held": 100,
                                          "available": 0}


async def test_per_user_limit_holds_under_concurrent_requests(migrated_settings: Settings,
                                                             db: Db) -> None:
    event_id, tt = await db.event(quantity=50, limit=2)
    inv = client(migrated_settings)
    results = await asyncio.gather(*(attempt(inv, event_id, "greedy", tt, 1) for _ in range(20)))
    assert sum(isinstance(r, dict) for r in results) == 2
    assert {r.slug for r in results if isinstance(r, Conflict)} == {"limit-exceeded"}
    assert await db.statuses(event_id) == Counter({"pending_payment": 2})


async def test_the_same_idempotency_key_gives_the_same_registration(
        migrated_settings: Settings, db: Db) -> None:
    event_id, tt = await db.event(quantity=10, price=0)
    inv = client(migrated_settings)
    results = await asyncio.gather(*(inv.call(event_id, "reserve", "u1", tt, 2,
                                              idempotency_key="k-1") for _ in range(10)))
    assert len({r["id"] for r in results}) == 1
    assert results[0]["status"] == "confirmed" and results[0]["reservation"] is None
    again = await inv.call(event_id, "reserve", "u1", tt, 2, idempotency_key="k-1")
    assert again["id"] == results[0]["id"]
    assert await db.statuses(event_id) == Counter({"confirmed": 2})


async def test_a_key_reused_on_another_event_is_refused_and_the_rest_of_the_batch_written(
        migrated_settings: Settings, db: Db) -> None:
    first, tt1 = await db.event(quantity=10, price=0)
    other, tt2 = await db.event(quantity=10, price=0)
    inv = client(migrated_settings)
    user = f"u-{uuid.uuid4()}"
    await inv.call(first, "reserve", user, tt1, 1, idempotency_key="shared")
    results = await asyncio.gather(
        attempt(inv, other, user, tt2, 1, idempotency_key="shared"),
        *(attempt(inv, other, f"{user}-{i}", tt2, 1, idempotency_key="own") for i in range(3)))
    assert isinstance(results[0], Conflict) and results[0].slug == "idempotency-key-reused"
    assert all(isinstance(r, dict) for r in results[1:])
    assert await db.statuses(first) == Counter({"confirmed": 1})
    assert await db.statuses(other) == Counter({"confirmed": 3})
    assert await db.published("registration.created", other) == 3


async def test_payment_before_expiry_confirms_and_nothing_expires(migrated_settings: Settings,
                                                                 db: Db) -> None:
    event_id, tt = await db.event(quantity=1)
    inv = client(migrated_settings, reservation_ttl_seconds=1)
    reg = await inv.call(event_id, "reserve", "u1", tt, 1)
    confirmed = await inv.call(event_id, "confirm_payment", reg["id"])
    assert confirmed["status"] == "confirmed"
    await asyncio.sleep(1.2)
    assert await inv.call(event_id, "expire_due") == 0
    assert await db.published("reservation.expired", event_id) == 0
    assert await db.statuses(event_id) == Counter({"confirmed": 1})


async def test_late_payment_is_accepted_only_while_seats_remain(migrated_settings: Settings,
                                                                db: Db) -> None:
    event_id, tt = await db.event(quantity=1)
    inv = client(migrated_settings, reservation_ttl_seconds=1)
    early = await inv.call(event_id, "reserve", "early", tt, 1)
    await asyncio.sleep(1.2)
    await inv.call(event_id, "expire_due")
    assert (await db.statuses(event_id))["expired"] == 1
    # Seats remain: the late payment confirms.
    assert (await inv.call(event_id, "confirm_payment", early["id"]))["status"] == "confirmed"
    # Now the only seat is taken: another expired reservation's payment is refunded.
    await inv.call(event_id, "cancel", early["id"], "attendee")
    late = await inv.call(event_id, "reserve", "late", tt, 1)
    await asyncio.sleep(1.2)
    await inv.call(event_id, "expire_due")
    winner = await inv.call(event_id, "reserve", "winner", tt, 1)
    refused = await inv.call(event_id, "confirm_payment", late["id"])
    assert refused["status"] == "expired" and refused["refund_due"] is True
    await inv.call(event_id, "cancel", winner["id"], "attendee")  # a seat frees up again...
    again = await inv.call(event_id, "confirm_payment", late["id"])  # ...redelivered payment
    assert again["status"] == "expired" and again["refund_due"] is True
    assert await db.published("registration.cancelled", event_id) == 3
    assert await db.published("reservation.expired", event_id) == 2
    counts = (await inv.call(event_id, "ready"))["ticket_types"][tt]
    assert counts == {"quantity": 1, "confirmed": 0, "held": 0, "available": 1}


async def test_expiry_racing_a_payment_ends_the_reservation_once(migrated_settings: Settings,
                                                                db: Db) -> None:
    event_id, tt = await db.event(quantity=5)
    inv = client(migrated_settings, reservation_ttl_seconds=1)
    regs = [await inv.call(event_id, "reserve", f"u{i}", tt, 1) for i in range(5)]
    await asyncio.sleep(1.05)
    await asyncio.gather(inv.call(event_id, "expire_due"),
                         *(inv.call(event_id, "confirm_payment", r["id"]) for r in regs))
    statuses = await db.statuses(event_id)
    expired_events = await db.published("reservation.expired", event_id)
    assert statuses == Counter({"confirmed": 5})  # seats remained, so every payment counts
    assert expired_events <= 5 and await db.held(event_id) == 0
    counts = (await inv.call(event_id, "ready"))["ticket_types"][tt]
    assert counts == {"quantity": 5, "confirmed": 5, "held": 0, "available": 0}


async def test_killed_host_restarts_and_no_seat_is_lost_or_doubled(
        migrated_settings: Settings, db: Db) -> None:
    import ray

    event_id, tt = await db.event(quantity=100)
    inv = client(migrated_settings)
    await inv.call(event_id, "ready")
    before = (await inv.host_stats(event_id))["pid"]
    tasks = [asyncio.ensure_future(batched(inv, event_id, f"user-{i}", tt, f"key-{i}"))
             for i in range(300)]
    some_answered = asyncio.Event()
    for task in tasks:
        task.add_done_callback(lambda _: some_answered.set()
                               if sum(t.done() for t in tasks) >= 20 else None)
    await some_answered.wait()
    ray.kill(ray.get_actor(inv.host_of(event_id), namespace=inv.namespace),
             no_restart=False)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(t.done() for t in tasks) == 300
    won = {r["id"] for r in results if isinstance(r, dict)}
    # After the restart, fill whatever is left, retrying the same keys.
    retry = await asyncio.gather(*(attempt(inv, event_id, f"user-{i}", tt, 1,
                                           idempotency_key=f"key-{i}") for i in range(300)))
    won |= {r["id"] for r in retry if isinstance(r, dict)}
    assert len(won) == 100
    assert await db.statuses(event_id) == Counter({"pending_payment": 100})
    assert await db.held(event_id) == 100
    after = await inv.call(event_id, "ready")
    assert (await inv.host_stats(event_id))["pid"] != before  # really killed and restarted
    assert after["ticket_types"][tt] == {"quantity": 100, "confirmed": 0, "held": 100,
                                         "available": 0}


async def test_an_idle_event_leaves_memory_and_comes_back_with_the_right_counts(
        migrated_settings: Settings, db: Db) -> None:
    event_id, tt = await db.event(quantity=10, price=0)
    inv = client(migrated_settings, inventory_idle_seconds=0.5)
    for i in range(3):
        await inv.call(event_id, "reserve", f"u{i}", tt, 1)
    stats = await inv.host_stats(event_id)
    assert event_id in stats["events"]
    for _ in range(100):  # the owner leaves the host's memory once idle; the process stays
        now = await inv.host_stats(event_id)
        if event_id not in now["events"]:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the idle event stayed in memory")
    assert now["pid"] == stats["pid"]
    counts = (await inv.call(event_id, "ready"))["ticket_types"][tt]
    assert counts == {"quantity": 10, "confirmed": 3, "held": 0, "available": 7}
    await client(migrated_settings).call(event_id, "ready")  # back to the default idle time


def events_on_one_host(hosts: int, count: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < count:
        candidate = str(uuid.uuid4())
        if not ids or host_index(candidate, hosts) == host_index(ids[0], hosts):
            ids.append(candidate)
    return ids


async def test_events_of_one_host_share_its_group_commits(migrated_settings: Settings,
                                                          db: Db) -> None:
    inv = client(migrated_settings)
    hosts = migrated_settings.inventory_hosts
    pairs = [await db.event(quantity=20, event_id=e) for e in events_on_one_host(hosts, 3)]
    for e, _ in pairs:  # active first, so their decisions meet in the same commit windows
        await inv.call(e, "ready")
    results = await asyncio.gather(*(batched(inv, e, f"u{i}", tt, f"k-{e}-{i}")
                                     for e, tt in pairs for i in range(25)))
    assert sum(isinstance(r, dict) for r in results) == 60  # 20 of 25 on each event
    assert sum(isinstance(r, Conflict) for r in results) == 15
    async with db.sessions() as s:
        shared = await s.scalar(text(
            "SELECT count(*) FROM (SELECT xmin::text FROM registrations WHERE event_id = ANY(:ids) "
            "GROUP BY xmin::text HAVING count(DISTINCT event_id) > 1) t"),
            {"ids": [e for e, _ in pairs]})
    assert shared >= 1  # at least one transaction wrote registrations of several events
    for e, _ in pairs:
        assert await db.statuses(e) == Counter({"pending_payment": 20})


async def test_a_replaced_host_can_no_longer_sell(migrated_settings: Settings, db: Db) -> None:
    """Fencing: a second owner of the same shards takes a newer epoch; from then on every
    commit of the first fails, so the two can never both sell the same seats."""
    import ray

    event_id, tt = await db.event(quantity=10)
    inv = client(migrated_settings)
    for i in range(3):
        await inv.call(event_id, "reserve", f"early-{i}", tt, 1)
    old_epoch = (await inv.host_stats(event_id))["epoch"]
    index = host_index(event_id, migrated_settings.inventory_hosts)
    newer = InventoryHost(migrated_settings.to_runtime(), index=index)  # in this process
    try:
        counts = await newer.call(event_id, "ready")
        assert counts["ticket_types"][tt]["held"] == 3
        assert (await newer.stats())["epoch"] > old_epoch
        with pytest.raises(ServiceUnavailable):  # the stale host refuses and keeps refusing
            await inv.call(event_id, "reserve", "stale", tt, 1)
        sold = [await newer.call(event_id, "reserve", (f"new-{i}", tt, 1)) for i in range(7)]
        assert len({r["id"] for r in sold}) == 7
        with pytest.raises(Conflict):
            await newer.call(event_id, "reserve", ("one-too-many", tt, 1))
        assert await db.statuses(event_id) == Counter({"pending_payment": 10})
    finally:
        await newer.close()
        # A new incarnation of the Ray host takes the shards back for the other tests.
        ray.kill(ray.get_actor(inv.host_of(event_id), namespace=inv.namespace),
             no_restart=False)
    again = await inv.call(event_id, "ready")
    assert again["ticket_types"][tt] == {"quantity": 10, "confirmed": 0, "held": 10,
                                         "available": 0}


async def test_a_hot_event_moves_to_a_host_of_its_own(migrated_settings: Settings,
                                                      db: Db) -> None:
    event_id, tt = await db.event(quantity=50)
    inv, other = client(migrated_settings), client(migrated_settings)
    for i in range(5):
        await inv.call(event_id, "reserve", f"before-{i}", tt, 1)
    shared_pid = (await inv.host_stats(event_id))["pid"]
    async with db.sessions.begin() as s:
        await s.execute(text("UPDATE events SET hot = true WHERE id = :e"), {"e": event_id})
    placed = await inv.declare_hot(event_id, True)
    assert placed["host"] == f"inventory-hot-{event_id}"
    assert placed["ticket_types"][tt]["held"] == 5
    hot = await inv.host_stats(event_id)
    assert hot["pid"] != shared_pid and hot["events"] == [event_id]
    # A caller that has not heard of the move is refused by the shared host and follows it.
    results = await asyncio.gather(*(batched(other, event_id, f"u{i}", tt, f"k{i}")
                                     for i in range(60)))
    assert sum(isinstance(r, dict) for r in results) == 45
    assert other.host_of(event_id) == f"inventory-hot-{event_id}"
    assert await db.statuses(event_id) == Counter({"pending_payment": 50})
    # Back to the shared hosts: the hot host lets go and the shared one takes over.
    async with db.sessions.begin() as s:
        await s.execute(text("UPDATE events SET hot = false WHERE id = :e"), {"e": event_id})
    back = await inv.declare_hot(event_id, False)
    assert back["host"].startswith("inventory-host-")
    assert back["ticket_types"][tt] == {"quantity": 50, "confirmed": 0, "held": 50,
                                        "available": 0}
    with pytest.raises(Conflict):
        await other.call(event_id, "reserve", "late", tt, 1)  # follows the move back too


async def test_a_key_no_longer_in_memory_is_answered_from_postgres(
        migrated_settings: Settings, db: Db) -> None:
    """An owner keeps only its newest idempotency keys; the retry of an older one, refused
    (sold out) or written twice (refused by Postgres' key), gets the first registration."""
    event_id, tt = await db.event(quantity=4)
    async with db.sessions.begin() as s:  # on a host of its own, so no shared host is fenced
        await s.execute(text("UPDATE events SET hot = true WHERE id = :e"), {"e": event_id})
    config = migrated_settings.model_copy(update={"inventory_keys_in_memory": 2}).to_runtime()
    host = InventoryHost(config, hot_event=event_id)  # in this process

    async def reserve(n: int) -> dict[str, Any]:
        answer: dict[str, Any] = await host.call(event_id, "reserve",
                                                 (f"u{n}", tt, 1, "full", f"key-{n}"))
        return answer

    try:
        first = [await reserve(n) for n in range(3)]
        owner = host.owners[event_id]
        assert len(owner.by_key) == 2 and ("u0", "key-0") not in owner.by_key
        # Seats remain: the retry is decided anew, refused by Postgres and answered from it.
        assert (await reserve(0))["id"] == first[0]["id"]
        counts = (await host.call(event_id, "ready"))["ticket_types"][tt]
        assert counts["held"] == 3 and counts["available"] == 1  # its seat came back
        await reserve(3)  # sold out now, and key-1 has left memory
        assert ("u1", "key-1") not in owner.by_key
        assert (await reserve(1))["id"] == first[1]["id"]
        # Activated again, an owner loads only the newest keys and still answers the others.
        assert await host.drop(event_id)
        assert (await reserve(2))["id"] == first[2]["id"]
        assert (await reserve(0))["id"] == first[0]["id"]
        assert len(host.owners[event_id].by_key) == 2
        with pytest.raises(Conflict):  # a new key is still refused when sold out
            await reserve(9)
        assert await db.statuses(event_id) == Counter({"pending_payment": 4})
        assert await db.published("registration.created", event_id) == 4
    finally:
        await host.close()


async def test_a_starting_host_activates_events_with_open_holds_when_they_are_due(
        migrated_settings: Settings, db: Db) -> None:
    """A new incarnation does not rebuild its events with open holds at start; a timer at
    the first hold's expiry activates each one, and the holds expire with nobody calling."""
    event_id, tt = await db.event(quantity=5)
    async with db.sessions.begin() as s:  # on a host of its own, so no shared host is fenced
        await s.execute(text("UPDATE events SET hot = true WHERE id = :e"), {"e": event_id})
    config = migrated_settings.model_copy(update={"reservation_ttl_seconds": 2}).to_runtime()
    first = InventoryHost(config, hot_event=event_id)
    try:
        for i in range(2):
            await first.call(event_id, "reserve", (f"u{i}", tt, 1))
    finally:
        await first.close()
    assert await db.held(event_id) == 2
    second = InventoryHost(config, hot_event=event_id)
    try:
        for _ in range(50):  # started: one timer for the event, which is not activated
            stats = await second.stats()
            if stats["timers"]:
                break
            await asyncio.sleep(0.02)
        assert stats["events"] == [] and stats["timers"] == 1
        for _ in range(100):
            if await db.held(event_id) == 0:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the holds open when the host started did not expire")
        assert (await second.stats())["events"] == [event_id]
        assert await db.published("reservation.expired", event_id) == 2
        counts = (await second.call(event_id, "ready"))["ticket_types"][tt]
        assert counts == {"quantity": 5, "confirmed": 0, "held": 0, "available": 5}
    finally:
        await second.close()


async def test_only_a_hosts_kind_of_event_is_resumed(migrated_settings: Settings,
                                                     db: Db) -> None:
    """A shared host does not resume a hot event's holds, nor a hot host another event's."""
    from actors import store

    plain, plain_tt = await db.event(quantity=3)
    hot, hot_tt = await db.event(quantity=3)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    async with db.sessions.begin() as s:
        await s.execute(text("UPDATE events SET hot = true WHERE id = :e"), {"e": hot})
        for event_id, tt in ((plain, plain_tt), (hot, hot_tt)):
            await s.execute(insert(registrations).values(
                id=f"r-{event_id}", event_id=event_id, ticket_type_id=tt, user_id="u",
                quantity=1, status="pending_payment", payment_mode="full", amount=1000,
                currency="RUB"))
            await s.execute(insert(reservations).values(
                id=f"h-{event_id}", registration_id=f"r-{event_id}", event_id=event_id,
                ticket_type_id=tt, user_id="u", quantity=1, status="held", expires_at=expires))
    async with db.sessions() as s:
        shared = dict(await store.first_expiries(s, None))
        own = dict(await store.first_expiries(s, hot))
    assert plain in shared and hot not in shared
    assert own == {hot: pytest.approx(expires.timestamp())}
