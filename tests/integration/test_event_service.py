"""Event use cases and message handlers on the real Postgres with the real inventory actors.

The user service is a small fake with the interface the event service relies on.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from actors.client import InventoryClient
from cluster.settings import Settings
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork, outbox_for
from serve.common.context import Identity, RequestContext
from serve.common.errors import Conflict, Forbidden, NotFound, Unprocessable
from serve.events.handlers import EventHandlers
from serve.events.registrations import RegistrationUseCases
from serve.events.reminders import send_due_reminders
from serve.events.schemas import (
    CheckInIn,
    EventFilters,
    EventIn,
    EventUpdate,
    Money,
    RegistrationIn,
    TicketTypeIn,
    WaitlistIn,
)
from serve.events.service import EventUseCases
from serve.events.sweep import sweep_once
from storage.engine import create_engine, sessionmaker
from storage.event import reservations, waitlist_entries

pytestmark = pytest.mark.usefixtures("ray_session")
START = datetime.now(UTC) + timedelta(days=30)


class FakeUsers:
    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], str] = {}
        self.members: set[tuple[str, str]] = set()
        self.group_orgs: dict[str, str] = {}

    async def organization_role(self, ctx: RequestContext, user_id: str,
                                organization_id: str) -> str | None:
        return self.roles.get((user_id, organization_id))

    async def is_group_member(self, ctx: RequestContext, user_id: str, group_id: str) -> bool:
        return (user_id, group_id) in self.members

    async def group_organization(self, ctx: RequestContext, group_id: str) -> str | None:
        return self.group_orgs.get(group_id)


def as_user(user_id: str | None) -> RequestContext:
    return RequestContext(identity=Identity(user_id) if user_id else None)


class World:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings, "event")
        self.sessions = sessionmaker(self.engine)
        self.users = FakeUsers()
        self.inventory = InventoryClient(settings.to_runtime())
        self.events = EventUseCases(settings, self.sessions, self.users, self.inventory)
        self.regs = RegistrationUseCases(settings, self.sessions, self.users, self.inventory)
        self.handlers = EventHandlers(self.inventory).handlers()

    async def published_event(self, org: str, price: int = 1000, quantity: int = 10,
                              **event: Any) -> tuple[str, str]:
        self.users.roles[("owner", org)] = "owner"
        created = await self.events.create_event(as_user("owner"), EventIn(
            organization_id=org, title=f"Concert {org}", starts_at=START,
            ends_at=START + timedelta(hours=3), **event))
        tt = await self.events.create_ticket_type(as_user("owner"), created["id"], TicketTypeIn(
            name="GA", price=Money(amount=price, currency="RUB"), quantity=quantity))
        await self.events.transition(as_user("owner"), created["id"], "publish")
        return created["id"], tt["id"]

    async def handle(self, event_type: str, data: dict[str, Any]) -> None:
        envelope = Envelope(type=event_type, producer="payment", correlation_id="t", data=data)
        async with UnitOfWork(self.sessions, "event") as uow:
            await self.handlers[event_type](uow, envelope)

    async def published(self, event_type: str, aggregate: str) -> list[dict[str, Any]]:
        outbox = outbox_for("event")
        async with self.sessions() as s:
            rows = await s.execute(select(outbox.c.envelope).where(
                outbox.c.type == event_type, outbox.c.aggregate_id == aggregate))
            return [r[0]["data"] for r in rows.all()]


@pytest.fixture
async def world(migrated_settings: Settings) -> Any:
    w = World(migrated_settings.model_copy(update={"jwt_secret": SecretStr("s" * 40),
                                                   "ticket_signing_key": SecretStr("k" * 40),
                                                   "reservation_ttl_seconds": 2}))
    yield w
    await w.engine.dispose()


def payment(reg: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"payment_id": "p-" + reg["id"], "registration_id": reg["id"],
            "event_id": reg["event_id"], "user_id": reg["user_id"], "kind": "full",
            "amount": reg["amount"]["amount"], "currency": "RUB", **extra}


async def test_lifecycle_visibility_and_illegal_transitions(world: World) -> None:
    world.users.roles[("owner", "org-a")] = "owner"
    draft = await world.events.create_event(as_user("owner"), EventIn(
        organization_id="org-a", title="Draft", starts_at=START, ends_at=START + timedelta(1)))
    assert draft["status"] == "draft"
    with pytest.raises(NotFound):
        await world.events.get_event(as_user(None), draft["id"])
    with pytest.raises(Forbidden):
        await world.events.create_event(as_user("stranger"), EventIn(
            organization_id="org-a", title="x", starts_at=START, ends_at=START + timedelta(1)))
    with pytest.raises(Conflict) as err:
        await world.events.transition(as_user("owner"), draft["id"], "complete")
    assert err.value.slug == "illegal-transition"
    await world.events.transition(as_user("owner"), draft["id"], "publish")
    assert (await world.events.get_event(as_user(None), draft["id"]))["status"] == "published"
    await world.events.transition(as_user("owner"), draft["id"], "cancel")
    with pytest.raises(Conflict):
        await world.events.transition(as_user("owner"), draft["id"], "publish")
    assert [e["event_id"] for e in await world.published("event.published", draft["id"])] \
        == [draft["id"]]
    assert len(await world.published("event.cancelled", draft["id"])) == 1


async def test_ticket_type_rules_are_enforced(world: World) -> None:
    event_id, _ = await world.published_event("org-tt")
    with pytest.raises(Unprocessable):
        await world.events.create_ticket_type(as_user("owner"), event_id, TicketTypeIn(
            name="VIP", price=Money(amount=100, currency="RUB"), quantity=5,
            prepayment_amount=100))
    with pytest.raises(Conflict):  # quantity only grows once published
        tts = await world.events.list_ticket_types(as_user(None), event_id)
        await world.events.update_ticket_type(as_user("owner"), event_id, tts["items"][0]["id"],
                                              TicketTypeIn(name="GA", quantity=1,
                                                           price=Money(amount=1000,
                                                                       currency="RUB")))


async def test_paid_registration_payment_check_in_and_ticket(world: World) -> None:
    event_id, tt = await world.published_event("org-pay", price=2500)
    reg = await world.regs.register(as_user("alice"), event_id,
                                    RegistrationIn(ticket_type_id=tt, quantity=2), "idem-1")
    assert reg["status"] == "pending_payment" and reg["amount"]["amount"] == 5000
    [listed] = (await world.events.list_ticket_types(as_user(None), event_id))["items"]
    assert (listed["quantity"], listed["available"]) == (10, 8)
    assert (await world.regs.get_registration(as_user("alice"), reg["id"]))["ticket_code"] is None
    # The payment service may spell our UUIDs differently (hex, upper case).
    await world.handle("payment.completed", payment(reg) | {
        "registration_id": uuid.UUID(reg["id"]).hex, "event_id": reg["event_id"].upper()})
    await world.handle("payment.completed", payment(reg))  # redelivered: no change
    mine = await world.regs.get_registration(as_user("alice"), reg["id"])
    assert mine["status"] == "confirmed" and mine["ticket_code"]
    with pytest.raises(NotFound):
        await world.regs.get_registration(as_user("mallory"), reg["id"])
    png = await world.regs.ticket_png(as_user("alice"), reg["id"])
    assert png.startswith(b"\x89PNG")
    with pytest.raises(Unprocessable):
        await world.regs.check_in(as_user("owner"), reg["id"],
                                  CheckInIn(ticket_code=mine["ticket_code"] + "x"))
    with pytest.raises(Forbidden):
        await world.regs.check_in(as_user("alice"), reg["id"],
                                  CheckInIn(ticket_code=mine["ticket_code"]))
    done = await world.regs.check_in(as_user("owner"), reg["id"],
                                     CheckInIn(ticket_code=mine["ticket_code"]))
    assert done["checked_in_at"]
    with pytest.raises(Conflict) as err:
        await world.regs.check_in(as_user("owner"), reg["id"],
                                  CheckInIn(ticket_code=mine["ticket_code"]))
    assert err.value.slug == "already-checked-in"
    assert len(await world.published("checkin.completed", event_id)) == 1
    listed = await world.regs.my_registrations(as_user("alice"))
    assert [r["status"] for r in listed["items"]] == ["checked_in"]


async def test_full_refund_cancels_and_partial_does_not(world: World) -> None:
    event_id, tt = await world.published_event("org-refund", quantity=1)
    reg = await world.regs.register(as_user("bob"), event_id, RegistrationIn(ticket_type_id=tt),
                                    None)
    await world.handle("payment.completed", payment(reg))
    refund = payment(reg, refund_id="r1", refunded_amount=100, fully_refunded=False)
    await world.handle("payment.refunded", refund)
    assert (await world.regs.get_registration(as_user("bob"), reg["id"]))["status"] == "confirmed"
    await world.handle("payment.refunded", refund | {"fully_refunded": True})
    assert (await world.regs.get_registration(as_user("bob"), reg["id"]))["status"] == "cancelled"
    # The seat came back exactly once.
    again = await world.regs.register(as_user("carol"), event_id,
                                      RegistrationIn(ticket_type_id=tt), None)
    assert again["status"] == "pending_payment"
    with pytest.raises(Conflict):
        await world.regs.register(as_user("dave"), event_id, RegistrationIn(ticket_type_id=tt),
                                  None)


async def test_group_events_and_the_membership_mirror(world: World) -> None:
    world.users.group_orgs["g1"] = "org-g"
    event_id, tt = await world.published_event("org-g", visibility="group", group_id="g1")
    with pytest.raises(NotFound):
        await world.events.get_event(as_user("erin"), event_id)
    with pytest.raises(Forbidden):  # the actor checks the mirror
        await world.inventory.call(event_id, "reserve", "erin", tt, 1)
    # (the organization's events only: other tests' events may fill a first page of all)
    listed = await world.events.list_events(as_user("erin"), EventFilters(organization_id="org-g"))
    assert event_id not in [e["id"] for e in listed["items"]]
    await world.handle("group.member.added",
                       {"group_id": "g1", "organization_id": "org-g", "user_id": "erin"})
    assert (await world.events.get_event(as_user("erin"), event_id))["id"] == event_id
    listed = await world.events.list_events(as_user("erin"), EventFilters(organization_id="org-g"))
    assert event_id in [e["id"] for e in listed["items"]]
    assert (await world.inventory.call(event_id, "reserve", "erin", tt, 1))["status"]


async def test_participant_visibility(world: World) -> None:
    closed, tt = await world.published_event("org-closed", price=0,
                                             participants_visibility="closed")
    await world.regs.register(as_user("fay"), closed, RegistrationIn(ticket_type_id=tt), None)
    with pytest.raises(Forbidden):
        await world.regs.event_registrations(as_user("fay"), closed)
    assert len((await world.regs.event_registrations(as_user("owner"), closed))["items"]) == 1
    opened, tt2 = await world.published_event("org-open", price=0)
    await world.regs.register(as_user("fay"), opened, RegistrationIn(ticket_type_id=tt2), None)
    seen = (await world.regs.event_registrations(as_user("fay"), opened))["items"]
    assert len(seen) == 1 and "amount" not in seen[0]
    with pytest.raises(Forbidden):
        await world.regs.event_registrations(as_user("gus"), opened)


async def test_listing_pages_with_a_cursor(world: World) -> None:
    world.users.roles[("owner", "org-list")] = "owner"
    ids = []
    for i in range(5):
        e = await world.events.create_event(as_user("owner"), EventIn(
            organization_id="org-list", title=f"Night {i}", starts_at=START + timedelta(hours=i),
            ends_at=START + timedelta(hours=i + 1)))
        await world.events.transition(as_user("owner"), e["id"], "publish")
        ids.append(e["id"])
    seen, cursor = [], None
    while True:
        page = await world.events.list_events(as_user(None), EventFilters(
            organization_id="org-list", limit=2, cursor=cursor))
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


async def test_a_freed_seat_goes_to_the_waiting_list(world: World) -> None:
    event_id, tt = await world.published_event("org-wait", quantity=1)
    with pytest.raises(Conflict) as err:
        await world.regs.join_waitlist(as_user("ivy"), event_id, WaitlistIn(ticket_type_id=tt))
    assert err.value.slug == "not-sold-out"
    first = await world.regs.register(as_user("hal"), event_id, RegistrationIn(ticket_type_id=tt),
                                      None)
    entry = await world.regs.join_waitlist(as_user("ivy"), event_id,
                                           WaitlistIn(ticket_type_id=tt))
    [joined] = await world.published("waitlist.joined", event_id)
    assert {k: joined[k] for k in ("entry_id", "event_id", "organization_id", "ticket_type_id",
                                   "user_id", "quantity")} == {
        "entry_id": entry["id"], "event_id": event_id, "organization_id": "org-wait",
        "ticket_type_id": tt, "user_id": "ivy", "quantity": 1}
    # joining twice is refused and publishes nothing
    with pytest.raises(Conflict):
        await world.regs.join_waitlist(as_user("ivy"), event_id, WaitlistIn(ticket_type_id=tt))
    assert len(await world.published("waitlist.joined", event_id)) == 1
    await world.regs.cancel_registration(as_user("hal"), first["id"])
    offers = [d for d in await world.published("registration.created", event_id)
              if d["waitlist_offer"]]
    assert [o["user_id"] for o in offers] == ["ivy"]
    async with world.sessions() as s:
        status = await s.scalar(select(waitlist_entries.c.status).where(
            waitlist_entries.c.user_id == "ivy"))
    assert status == "offered"
    counts = (await world.inventory.call(event_id, "ready"))["ticket_types"][tt]
    assert counts["held"] == 1 and counts["available"] == 0


async def test_the_sweep_expires_holds_of_a_lost_actor_exactly_once(world: World) -> None:
    import ray
    from ray.exceptions import RayActorError

    event_id, tt = await world.published_event("org-sweep", quantity=3)
    reg = await world.inventory.call(event_id, "reserve", "jo", tt, 1)
    lost = ray.get_actor(world.inventory.host_of(event_id), namespace=world.inventory.namespace)
    ray.kill(lost, no_restart=True)
    while True:  # ray.kill returns at once: the host is lost only once it answers no more
        try:
            await lost.stats.remote()
        except RayActorError:
            break
        await asyncio.sleep(0.05)
    async with world.sessions() as s:  # it died before its timer could expire the hold
        assert await s.scalar(select(reservations.c.status).where(
            reservations.c.registration_id == reg["id"])) == "held"
    await asyncio.sleep(2.2)  # past the 2 s reservation time
    # The sweep counts every overdue hold of the test database it saw end (other tests'
    # events' too): at least this one. Exactly once is asserted on this event's messages.
    assert await sweep_once(world.sessions, world.inventory, grace_seconds=0) >= 1
    async with world.sessions() as s:
        assert await s.scalar(select(reservations.c.status).where(
            reservations.c.registration_id == reg["id"])) == "expired"
    await sweep_once(world.sessions, world.inventory, grace_seconds=0)  # a second pass: no-op
    assert len(await world.published("reservation.expired", event_id)) == 1
    async with world.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(waitlist_entries)
                              .where(waitlist_entries.c.event_id == event_id)) == 0
    counts = (await world.inventory.call(event_id, "ready"))["ticket_types"][tt]
    assert counts == {"quantity": 3, "confirmed": 0, "held": 0, "available": 3}


async def test_reminders_are_published_once_per_offset(world: World) -> None:
    event_id, _ = await world.published_event("org-remind")
    day_before = START - timedelta(hours=23)
    assert await send_due_reminders(world.sessions, [1440, 60], day_before) >= 1
    assert await send_due_reminders(world.sessions, [1440, 60], day_before) == 0
    hour_before = START - timedelta(minutes=30)
    await send_due_reminders(world.sessions, [1440, 60], hour_before)
    await send_due_reminders(world.sessions, [1440, 60], hour_before)
    offsets = [d["offset_minutes"] for d in await world.published("event.reminder", event_id)]
    assert sorted(offsets) == [60, 1440]


async def test_changing_an_event_publishes_event_updated_with_the_changed_fields(
        world: World) -> None:
    event_id, _ = await world.published_event("org-upd")
    later = START + timedelta(days=2)
    changed = await world.events.update_event(as_user("owner"), event_id, EventUpdate(
        starts_at=later, ends_at=later + timedelta(hours=3), venue="Hall 2"))
    assert changed["venue"] == "Hall 2"
    [update] = await world.published("event.updated", event_id)
    assert update["changed"] == ["ends_at", "starts_at", "venue"]
    assert datetime.fromisoformat(update["starts_at"]) == later
    with pytest.raises(Forbidden):  # a refusal publishes nothing
        await world.events.update_event(as_user("stranger"), event_id, EventUpdate(title="x"))
    assert len(await world.published("event.updated", event_id)) == 1
    assert (update["status"], update["visibility"]) == ("published", "public")
    await world.events.transition(as_user("owner"), event_id, "unpublish")
    [back] = await world.published("event.unpublished", event_id)
    assert back["status"] == "draft"
    assert datetime.fromisoformat(back["updated_at"]) > datetime.fromisoformat(
        update["updated_at"])
