"""A hypothesis state machine over several events that share one inventory host (real Ray
hosts, real Postgres): any sequence of reservations, payments and cancellations keeps every
event's owner, its rows and a simple model in agreement, and never oversells."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, insert, select

from actors.client import InventoryClient
from actors.shards import host_index
from cluster.settings import Settings
from serve.common.errors import Conflict
from storage.engine import create_engine, sessionmaker
from storage.event import events, registrations, reservations, ticket_types

pytestmark = pytest.mark.usefixtures("ray_session")
QUANTITY = {0: 3, 1: 2, 2: 4}
USERS = ["ann", "bob", "cyd"]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_several_events_on_one_host_keep_their_invariants(
        migrated_settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
    engine = create_engine(migrated_settings, "event")
    sessions = sessionmaker(engine)
    hosts = migrated_settings.inventory_hosts

    def run(coro: Any) -> Any:
        return loop.run_until_complete(coro)

    async def create_events() -> list[tuple[str, str]]:
        ids: list[str] = []
        while len(ids) < len(QUANTITY):
            candidate = str(uuid.uuid4())
            if not ids or host_index(candidate, hosts) == host_index(ids[0], hosts):
                ids.append(candidate)
        now = datetime.now(UTC)
        pairs = [(e, str(uuid.uuid4())) for e in ids]
        async with sessions.begin() as s:
            await s.execute(insert(events), [dict(
                id=e, organization_id="org", title="Shared host", starts_at=now + timedelta(7),
                ends_at=now + timedelta(8), visibility="public", participants_visibility="open",
                status="published", created_by="owner") for e, _ in pairs])
            await s.execute(insert(ticket_types), [dict(
                id=tt, event_id=e, name="GA", price=500, currency="RUB", quantity=QUANTITY[i],
                per_user_limit=2) for i, (e, tt) in enumerate(pairs)])
        return pairs

    async def rows(event_id: str) -> tuple[int, int]:
        async with sessions() as s:
            held = await s.scalar(select(func.coalesce(func.sum(reservations.c.quantity), 0))
                                  .where(reservations.c.event_id == event_id,
                                         reservations.c.status == "held"))
            confirmed = await s.scalar(
                select(func.coalesce(func.sum(registrations.c.quantity), 0))
                .where(registrations.c.event_id == event_id,
                       registrations.c.status == "confirmed"))
        return int(held or 0), int(confirmed or 0)

    class SharedHost(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.inv = InventoryClient(migrated_settings.to_runtime())
            self.pairs = run(create_events())
            self.pending: list[tuple[int, str, str, int]] = []  # event, reg, user, qty
            self.confirmed: list[tuple[int, str, str, int]] = []

        def taken(self, i: int, user: str | None = None) -> int:
            return sum(q for e, _, u, q in self.pending + self.confirmed
                       if e == i and user in (None, u))

        @rule(i=st.sampled_from(list(QUANTITY)), user=st.sampled_from(USERS),
              qty=st.integers(1, 2))
        def reserve(self, i: int, user: str, qty: int) -> None:
            event_id, tt = self.pairs[i]
            fits = (self.taken(i) + qty <= QUANTITY[i]
                    and self.taken(i, user) + qty <= 2)
            try:
                key = uuid.uuid4().hex
                reg = run(self.inv.reserve(event_id, user, tt, qty, "full", key, "-"))
            except Conflict as exc:
                assert not fits, f"refused ({exc.slug}) although the seats fit"
                return
            assert fits, "sold seats that were not there"
            self.pending.append((i, reg["id"], user, qty))

        @rule(data=st.data())
        def pay(self, data: st.DataObject) -> None:
            if not self.pending:
                return
            item = data.draw(st.sampled_from(self.pending))
            result = run(self.inv.call(self.pairs[item[0]][0], "confirm_payment", item[1]))
            assert result["status"] == "confirmed"
            self.pending.remove(item)
            self.confirmed.append(item)

        @rule(data=st.data(), paid=st.booleans())
        def cancel(self, data: st.DataObject, paid: bool) -> None:
            pool = self.confirmed if paid else self.pending
            if not pool:
                return
            item = data.draw(st.sampled_from(pool))
            result = run(self.inv.call(self.pairs[item[0]][0], "cancel", item[1], "attendee"))
            assert result["status"] == "cancelled"
            pool.remove(item)

        @invariant()
        def owners_rows_and_model_agree(self) -> None:
            for i, (event_id, tt) in enumerate(self.pairs):
                counts = run(self.inv.call(event_id, "ready"))["ticket_types"][tt]
                held = sum(q for e, _, _, q in self.pending if e == i)
                confirmed = sum(q for e, _, _, q in self.confirmed if e == i)
                assert (counts["held"], counts["confirmed"]) == (held, confirmed)
                assert run(rows(event_id)) == (held, confirmed)
                assert held + confirmed <= QUANTITY[i]
                assert counts["available"] == QUANTITY[i] - held - confirmed

    try:
        run_state_machine_as_test(SharedHost, settings=settings(
            max_examples=12, stateful_step_count=25, deadline=None,
            suppress_health_check=[HealthCheck.too_slow]))
    finally:
        run(engine.dispose())
