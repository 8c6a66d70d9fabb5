"""What the inventory actor reads and writes in Postgres (schema ``event_service``).

Every write here is one unit of work: the state change and its domain events commit together.
Status changes are conditional (``WHERE status = ...``) so a change happens, and its event is
published, exactly once, whoever tries it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from messaging.outbox import UnitOfWork
from serve.events.domain import TicketTypeRules
from serve.events.inventory import Hold, Inventory
from storage.event import (
    events,
    group_members,
    idempotency_keys,
    registrations,
    reservations,
    ticket_types,
    waitlist_entries,
)


@dataclass(frozen=True, slots=True)
class NewRegistration:
    """A decision the actor has taken in memory and must persist before answering."""

    registration_id: str
    reservation_id: str | None
    event_id: str
    organization_id: str
    ticket_type_id: str
    user_id: str
    quantity: int
    status: str
    payment_mode: str
    amount: int
    currency: str
    prepayment_amount: int | None
    expires_at: datetime | None
    idempotency_key: str | None
    correlation_id: str


def epoch(value: datetime) -> float:
    return value.timestamp()


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


# Checks, inside a write, that this host still owns the event (raises otherwise).
Fence = Callable[[AsyncSession, str], Awaitable[None]]


@dataclass
class Catalogue:
    event: dict[str, Any]
    rules: dict[str, TicketTypeRules]


async def load_catalogue(session: AsyncSession, event_id: str) -> Catalogue | None:
    found = await session.execute(select(events).where(events.c.id == event_id))
    event = found.mappings().first()
    if event is None:
        return None
    rows = (await session.execute(
        select(ticket_types).where(ticket_types.c.event_id == event_id))).mappings().all()
    rules = {r["id"]: TicketTypeRules(r["price"], r["currency"], r["quantity"],
                                      r["per_user_limit"], r["prepayment_amount"],
                                      r["sales_start"], r["sales_end"]) for r in rows}
    return Catalogue(dict(event), rules)


@dataclass
class Seats:
    confirmed: list[tuple[str, str, int]]  # (ticket type, user, quantity)
    held: list[dict[str, Any]]  # reservation rows


async def load_seats(session: AsyncSession, event_id: str) -> Seats:
    """Confirmed seats per ticket type and user, and the held reservations of one event."""
    confirmed = await session.execute(
        select(registrations.c.ticket_type_id, registrations.c.user_id,
               func.sum(registrations.c.quantity))
        .where(registrations.c.event_id == event_id,
               registrations.c.status.in_(("confirmed", "checked_in")))
        .group_by(registrations.c.ticket_type_id, registrations.c.user_id))
    held = await session.execute(
        select(reservations).where(reservations.c.event_id == event_id,
                                   reservations.c.status == "held"))
    return Seats([(tt, user, int(n)) for tt, user, n in confirmed.all()],
                 [dict(r) for r in held.mappings().all()])


def fill_inventory(inv: Inventory, catalogue: Catalogue, seats: Seats) -> dict[str, str]:
    """Fill ``inv`` with the ticket types, confirmed seats and held reservations; returns hold
    id -> registration."""
    for tt, rules in catalogue.rules.items():
        inv.set_ticket_type(tt, rules.quantity, rules.per_user_limit)
    for tt, user, quantity in seats.confirmed:
        inv.add_confirmed(tt, user, quantity)
    owners: dict[str, str] = {}
    for r in seats.held:
        inv.restore_hold(Hold(r["id"], r["ticket_type_id"], r["user_id"], r["quantity"],
                              epoch(r["expires_at"])))
        owners[r["id"]] = r["registration_id"]
    return owners


async def is_group_member(session: AsyncSession, group_id: str, user_id: str) -> bool:
    found = await session.scalar(select(group_members.c.user_id).where(
        group_members.c.group_id == group_id, group_members.c.user_id == user_id))
    return found is not None


async def load_keys(session: AsyncSession, event_id: str,
                    limit: int) -> dict[tuple[str, str], str]:
    """(user, Idempotency-Key) -> registration for the newest ``limit`` keyed registrations
    of one event, oldest first."""
    rows = await session.execute(
        select(idempotency_keys.c.user_id, idempotency_keys.c.key,
               idempotency_keys.c.registration_id)
        .join(registrations, registrations.c.id == idempotency_keys.c.registration_id)
        .where(registrations.c.event_id == event_id)
        .order_by(idempotency_keys.c.created_at.desc()).limit(limit))
    return {(r.user_id, r.key): r.registration_id for r in reversed(rows.all())}


async def load_key(session: AsyncSession, user_id: str, key: str) -> str | None:
    """The registration a user's Idempotency-Key produced, on any event."""
    found = await session.scalar(
        select(idempotency_keys.c.registration_id)
        .where(idempotency_keys.c.user_id == user_id, idempotency_keys.c.key == key))
    return None if found is None else str(found)


async def write_offer(sessions: async_sessionmaker[AsyncSession], offer: NewRegistration,
                      entry_id: str, fence: Fence) -> None:
    """A waiting-list offer: the registration with its hold, and the entry marked offered."""
    async with UnitOfWork(sessions, "event") as uow:
        await fence(uow.session, offer.event_id)
        await insert_registrations(uow, [offer], waitlist_offer=True)
        await uow.session.execute(
            update(waitlist_entries).where(waitlist_entries.c.id == entry_id)
            .values(status="offered", registration_id=offer.registration_id))


async def next_waiting(session: AsyncSession, event_id: str, ticket_type_id: str,
                       available: int) -> dict[str, Any] | None:
    row = (await session.execute(
        select(waitlist_entries).where(
            waitlist_entries.c.event_id == event_id,
            waitlist_entries.c.ticket_type_id == ticket_type_id,
            waitlist_entries.c.status == "waiting",
            waitlist_entries.c.quantity <= available)
        .order_by(waitlist_entries.c.created_at, waitlist_entries.c.id).limit(1))
           ).mappings().first()
    return dict(row) if row else None


async def skip_waiting(sessions: async_sessionmaker[AsyncSession], entry_id: str) -> None:
    async with sessions.begin() as session:
        await session.execute(update(waitlist_entries).where(waitlist_entries.c.id == entry_id)
                              .values(status="skipped"))


# A batch's rows go in as arrays, one statement (one execution) per table however many rows:
# an executemany runs the statement once per row.
INSERT_REGISTRATIONS = text(
    f"INSERT INTO {registrations.fullname} (id, event_id, ticket_type_id, user_id, quantity, "
    "status, payment_mode, amount, currency, prepayment_amount) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:events AS text[]), "
    "CAST(:types AS text[]), CAST(:users AS text[]), CAST(:quantities AS int[]), "
    "CAST(:statuses AS text[]), CAST(:modes AS text[]), CAST(:amounts AS int[]), "
    "CAST(:currencies AS text[]), CAST(:prepayments AS int[]))")
INSERT_HOLDS = text(
    f"INSERT INTO {reservations.fullname} (id, registration_id, event_id, ticket_type_id, "
    "user_id, quantity, status, expires_at) "
    "SELECT h.id, h.reg, h.ev, h.tt, h.usr, h.n, 'held', h.expires FROM unnest("
    "CAST(:ids AS text[]), CAST(:regs AS text[]), CAST(:events AS text[]), "
    "CAST(:types AS text[]), CAST(:users AS text[]), CAST(:quantities AS int[]), "
    "CAST(:expires AS timestamptz[])) AS h(id, reg, ev, tt, usr, n, expires)")
INSERT_KEYS = text(
    f"INSERT INTO {idempotency_keys.fullname} (user_id, key, registration_id) "
    "SELECT * FROM unnest(CAST(:users AS text[]), CAST(:keys AS text[]), "
    "CAST(:regs AS text[]))")


async def insert_registrations(uow: UnitOfWork, batch: list[NewRegistration],
                               waitlist_offer: bool = False) -> None:
    await uow.session.execute(INSERT_REGISTRATIONS, {
        "ids": [n.registration_id for n in batch], "events": [n.event_id for n in batch],
        "types": [n.ticket_type_id for n in batch], "users": [n.user_id for n in batch],
        "quantities": [n.quantity for n in batch], "statuses": [n.status for n in batch],
        "modes": [n.payment_mode for n in batch], "amounts": [n.amount for n in batch],
        "currencies": [n.currency for n in batch],
        "prepayments": [n.prepayment_amount for n in batch]})
    held = [n for n in batch if n.reservation_id is not None]
    if held:
        await uow.session.execute(INSERT_HOLDS, {
            "ids": [n.reservation_id for n in held], "regs": [n.registration_id for n in held],
            "events": [n.event_id for n in held], "types": [n.ticket_type_id for n in held],
            "users": [n.user_id for n in held], "quantities": [n.quantity for n in held],
            "expires": [n.expires_at for n in held]})
    keyed = [n for n in batch if n.idempotency_key]
    if keyed:
        await uow.session.execute(INSERT_KEYS, {
            "users": [n.user_id for n in keyed], "keys": [n.idempotency_key for n in keyed],
            "regs": [n.registration_id for n in keyed]})
    for n in batch:
        uow.correlation_id = n.correlation_id
        uow.publish("registration.created", created_payload(n, waitlist_offer),
                    aggregate_id=n.event_id)


def created_payload(n: NewRegistration, waitlist_offer: bool = False) -> dict[str, Any]:
    """The ``registration.created`` payload of a decision."""
    return {"waitlist_offer": waitlist_offer,
            "registration_id": n.registration_id, "event_id": n.event_id,
            "organization_id": n.organization_id, "ticket_type_id": n.ticket_type_id,
            "user_id": n.user_id, "quantity": n.quantity, "status": n.status,
            "amount": n.amount, "currency": n.currency, "payment_mode": n.payment_mode,
            "prepayment_amount": n.prepayment_amount, "reservation_id": n.reservation_id,
            "expires_at": n.expires_at.isoformat() if n.expires_at else None}


async def expire_holds(sessions: async_sessionmaker[AsyncSession], event_id: str,
                       hold_ids: list[str], fence: Fence) -> dict[str, str]:
    """Expire the holds still held; publish reservation.expired for each one that changed.

    Returns the status every listed reservation has after the transaction.
    """
    async with UnitOfWork(sessions, "event") as uow:
        await fence(uow.session, event_id)
        changed = (await uow.session.execute(
            update(reservations)
            .where(reservations.c.id.in_(hold_ids), reservations.c.status == "held")
            .values(status="expired", ended_at=func.now())
            .returning(reservations.c.id, reservations.c.registration_id,
                       reservations.c.user_id, reservations.c.quantity))).all()
        if changed:
            await uow.session.execute(
                update(registrations)
                .where(registrations.c.id.in_([c.registration_id for c in changed]),
                       registrations.c.status == "pending_payment")
                .values(status="expired", end_reason="reservation-expired",
                        updated_at=func.now()))
        for c in changed:
            uow.publish("reservation.expired", {
                "reservation_id": c.id, "registration_id": c.registration_id,
                "event_id": event_id, "user_id": c.user_id, "quantity": c.quantity,
            }, aggregate_id=event_id)
        statuses = await uow.session.execute(
            select(reservations.c.id, reservations.c.status)
            .where(reservations.c.id.in_(hold_ids)))
        return {row.id: row.status for row in statuses.all()}


async def load_registration(session: AsyncSession, registration_id: str) -> dict[str, Any] | None:
    row = (await session.execute(
        select(registrations, reservations.c.id.label("reservation_id"),
               reservations.c.status.label("reservation_status"),
               reservations.c.expires_at)
        .select_from(registrations.outerjoin(
            reservations, reservations.c.registration_id == registrations.c.id))
        .where(registrations.c.id == registration_id))).mappings().first()
    return dict(row) if row else None


async def set_registration_status(uow: UnitOfWork, registration_id: str, old: str, new: str,
                                  **values: Any) -> bool:
    result = await uow.session.execute(
        update(registrations)
        .where(and_(registrations.c.id == registration_id, registrations.c.status == old))
        .values(status=new, updated_at=func.now(), **values)
        .returning(registrations.c.id))
    return result.first() is not None


async def end_reservation(uow: UnitOfWork, reservation_id: str, status: str) -> bool:
    result = await uow.session.execute(
        update(reservations)
        .where(reservations.c.id == reservation_id, reservations.c.status == "held")
        .values(status=status, ended_at=func.now())
        .returning(reservations.c.id))
    return result.first() is not None


async def overdue_holds(session: AsyncSession, grace_seconds: float) -> dict[str, list[str]]:
    """Holds past their expiry by more than ``grace_seconds`` (the safety sweep), by event."""
    rows = await session.execute(
        select(reservations.c.event_id, reservations.c.id)
        .where(reservations.c.status == "held",
               reservations.c.expires_at < func.now() - func.make_interval(
                   0, 0, 0, 0, 0, 0, grace_seconds)))
    found: dict[str, list[str]] = {}
    for event_id, hold_id in rows.all():
        found.setdefault(event_id, []).append(hold_id)
    return found


async def count_expired(session: AsyncSession, hold_ids: list[str]) -> int:
    """How many of ``hold_ids`` have expired."""
    return int(await session.scalar(
        select(func.count()).select_from(reservations)
        .where(reservations.c.id.in_(hold_ids), reservations.c.status == "expired")) or 0)


async def acquire_fences(sessions: async_sessionmaker[AsyncSession], scopes: list[str],
                         owner: str) -> int:
    """Take a new epoch for ``scopes`` (one value for all of them); older owners are fenced."""
    async with sessions.begin() as session:
        epoch = await session.scalar(text(
            "WITH v AS (SELECT nextval('inventory_epoch') AS epoch) "
            "INSERT INTO inventory_fences (scope, epoch, owner) "
            "SELECT s, v.epoch, :owner FROM unnest(CAST(:scopes AS text[])) AS s, v "
            "ON CONFLICT (scope) DO UPDATE SET epoch = excluded.epoch, owner = excluded.owner, "
            "acquired_at = now() RETURNING epoch"), {"scopes": scopes, "owner": owner})
    return int(epoch)


async def check_fences(session: AsyncSession, scopes: list[str], epoch: int,
                       event_ids: list[str], hot: bool) -> tuple[set[str], set[str]]:
    """Inside a write: the scopes still held at ``epoch`` and the events still owned by this
    kind of host (``hot`` or not). Both are share-locked until the transaction ends, so a new
    owner taking the scope, or an event declared (not) hot, waits for this write or fails it."""
    row = (await session.execute(text(
        "WITH f AS (SELECT scope FROM inventory_fences WHERE scope = ANY(CAST(:scopes AS text[])) "
        "AND epoch = :epoch FOR SHARE), "
        "e AS (SELECT id FROM events WHERE id = ANY(CAST(:ids AS text[])) AND hot = :hot "
        "FOR SHARE) "
        "SELECT ARRAY(SELECT scope FROM f), ARRAY(SELECT id FROM e)"),
        {"scopes": scopes, "epoch": epoch, "ids": event_ids, "hot": hot})).one()
    return set(row[0]), set(row[1])


async def first_expiries(session: AsyncSession, hot_event: str | None) -> list[tuple[str, float]]:
    """Each event with open holds and when its first hold expires (epoch seconds): the
    events of the hot host ``hot_event``, or every event not hot (for a shared host)."""
    query = (select(reservations.c.event_id, func.min(reservations.c.expires_at))
             .join(events, events.c.id == reservations.c.event_id)
             .where(reservations.c.status == "held", events.c.hot == (hot_event is not None))
             .group_by(reservations.c.event_id))
    if hot_event is not None:
        query = query.where(reservations.c.event_id == hot_event)
    rows = await session.execute(query)
    return [(event_id, expires_at.timestamp()) for event_id, expires_at in rows.all()]
