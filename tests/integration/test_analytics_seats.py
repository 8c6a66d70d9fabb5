"""The dashboard's seats left and waiting list from the real event service: ticket types,
reservations and a waiting-list join made through the event use cases and their inventory
actors, the event service's outbox messages consumed by analytics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from actors.client import InventoryClient
from cluster.settings import Settings
from messaging.consumer import ConsumerRuntime
from messaging.envelope import Envelope
from messaging.outbox import outbox_for
from serve.analytics.deployment import AnalyticsService
from serve.events.registrations import RegistrationUseCases
from serve.events.schemas import EventIn, Money, RegistrationIn, TicketTypeIn, WaitlistIn
from serve.events.service import EventUseCases
from serve.users.client import UserClient
from serve.users.deployment import UserService
from storage.engine import create_engine, sessionmaker
from tests.integration.analytics_support import ctx_of, organization
from tests.integration.users_support import (
    LocalClient,
    admin_email,
    identity_of,
    register,
    user_settings,
)

pytestmark = pytest.mark.usefixtures("ray_session")
START = datetime.now(UTC) + timedelta(days=20)


@pytest.fixture
async def rig(migrated_settings: Settings) -> AsyncIterator[dict[str, Any]]:
    settings = user_settings(migrated_settings, None)
    users = UserService(settings.to_runtime())
    engine = create_engine(settings, "event")
    sessions = sessionmaker(engine)
    inventory = InventoryClient(settings.to_runtime())
    user_client = UserClient(LocalClient("user", users))
    events = EventUseCases(settings, sessions, user_client, inventory)
    regs = RegistrationUseCases(settings, sessions, user_client, inventory)
    analytics = AnalyticsService(settings.to_runtime(), LocalClient("event", events),
                                 LocalClient("user", users))
    admin = identity_of(await register(users, admin_email(settings)))
    owner = await register(users)
    org = await organization(users, owner, admin)
    try:
        yield {"users": users, "events": events, "regs": regs, "analytics": analytics,
               "sessions": sessions, "owner": ctx_of(identity_of(owner)), "org": org}
    finally:
        await analytics.close()
        await users.close()
        await engine.dispose()


async def deliver_outbox(r: dict[str, Any], event_id: str) -> None:
    outbox = outbox_for("event")
    async with r["sessions"]() as session:
        rows = (await session.execute(select(outbox.c.envelope).where(
            outbox.c.aggregate_id == event_id).order_by(outbox.c.id))).scalars().all()
    consumer = ConsumerRuntime("analytics", r["analytics"].sessions,
                               r["analytics"].message_handlers())
    await consumer.deliver([Envelope.model_validate(row) for row in rows])


async def totals(r: dict[str, Any], event_id: str) -> dict[str, Any]:
    d = await r["analytics"].dashboard(r["owner"], event_id, None,
                                       (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                                       "day")
    result: dict[str, Any] = d["totals"]
    return result


async def test_seats_left_and_waiting_list_come_from_the_event_service(
        rig: dict[str, Any]) -> None:
    r = rig
    events, regs, owner = r["events"], r["regs"], r["owner"]
    event = await events.create_event(owner, EventIn(
        organization_id=r["org"], title="Seats", starts_at=START,
        ends_at=START + timedelta(hours=2)))
    paid = await events.create_ticket_type(owner, event["id"], TicketTypeIn(
        name="Paid", price=Money(amount=1000, currency="RUB"), quantity=10))
    free = await events.create_ticket_type(owner, event["id"], TicketTypeIn(
        name="Free", price=Money(amount=0, currency="RUB"), quantity=2))
    await events.transition(owner, event["id"], "publish")
    # Nothing sold yet: the stored state (no inventory owner in memory) says 12.
    assert (await events.seats_left(owner, event["id"]))["seats_left"] == 12
    buyer, taker, waiter = [ctx_of(identity_of(await register(r["users"]))) for _ in range(3)]
    held = await regs.register(buyer, event["id"], RegistrationIn(
        ticket_type_id=paid["id"], quantity=3), uuid.uuid4().hex)
    assert held["status"] == "pending_payment"
    took = await regs.register(taker, event["id"], RegistrationIn(
        ticket_type_id=free["id"], quantity=2), uuid.uuid4().hex)
    assert took["status"] == "confirmed"
    await regs.join_waitlist(waiter, event["id"], WaitlistIn(ticket_type_id=free["id"]))
    live = await events.seats_left(owner, event["id"])
    assert live["source"] == "inventory"
    assert {t["name"]: t["available"] for t in live["ticket_types"]} == {"Paid": 7, "Free": 0}
    await deliver_outbox(r, event["id"])
    t = await totals(r, event["id"])
    assert t["seats_left"] == 7
    assert t["reservations"] == 5 and t["confirmed"] == 2
    assert t["waitlist"] == 1
    # The held seats come back when the registration is cancelled.
    await regs.cancel_registration(buyer, held["id"])
    assert (await totals(r, event["id"]))["seats_left"] == 10
