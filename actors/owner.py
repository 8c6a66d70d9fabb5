"""The owner of one event's inventory: the only place seats of that event are given out.

An ``EventOwner`` is a plain object living inside an inventory host (``actors.host``), one per
active event (a virtual actor: Orleans' grain, Akka's sharded entity). It is rebuilt from
Postgres when the event is first asked for (a few queries), decides every reservation
synchronously on the pure ``Inventory`` (never across an ``await``), and hands each decision to
the host's group commit; the caller hears "yes" only after the commit. Changes to existing
registrations (payment, cancellation, expiry) run one at a time under the owner's lock, each in
a transaction that checks the host's fence first. An idle owner is dropped from memory.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors import store
from actors.store import NewRegistration
from cluster.settings import Settings
from messaging.outbox import UnitOfWork
from serve.common.bounded import BoundedDict
from serve.common.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from serve.events.domain import (
    RegistrationStatus,
    charge_for,
    check_can_register,
    transition_registration,
)
from serve.events.inventory import Hold, Inventory
from serve.events.views import registration_view

T = TypeVar("T")


class Dropped(Exception):
    """The owner left memory while a call waited for it; the host retries on a fresh one."""


class OwnerMoved(ServiceUnavailable):
    """The event is owned by another host now (it was declared hot, or no longer is)."""

    slug = "inventory-moved"


class HostServices(Protocol):
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    reads: async_sessionmaker[AsyncSession]  # autocommit: no BEGIN/ROLLBACK round trips

    def commit(self, decision: NewRegistration) -> asyncio.Future[None]: ...

    async def fence(self, session: AsyncSession, event_id: str) -> None: ...

    def schedule(self, event_id: str, hold: Hold) -> None: ...


class EventOwner:
    def __init__(self, host: HostServices, event_id: str, catalogue: store.Catalogue,
                 inv: Inventory, hold_owner: dict[str, str],
                 keys: dict[tuple[str, str], str]) -> None:
        self.host = host
        self.event_id = event_id
        self.catalogue = catalogue
        self.inv = inv
        self.hold_owner = hold_owner  # reservation id -> registration id
        # (user, Idempotency-Key) -> the answer being written, or the registration id: the
        # newest keys only (AFISHA_INVENTORY_KEYS_IN_MEMORY); older ones are asked of Postgres.
        limit = host.settings.inventory_keys_in_memory
        self.by_key: BoundedDict[tuple[str, str], asyncio.Future[dict[str, Any]] | str] = (
            BoundedDict(limit))
        for key, registration_id in keys.items():
            self.by_key[key] = registration_id
        self.loaded_every_key = len(keys) < limit
        self.mutate = asyncio.Lock()
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.dropped = False

    @classmethod
    async def activate(cls, host: HostServices, event_id: str) -> EventOwner | None:
        """Rebuild from Postgres: the event, its ticket types, confirmed seats, unexpired holds
        and idempotency keys (``None`` when there is no such event)."""
        async def read(load: Callable[..., Awaitable[T]], *args: Any) -> T:
            async with host.reads() as session:
                return await load(session, event_id, *args)

        # Three connections at once, each statement on its own (no transaction): a first
        # reservation waits for two round trips, not a chain of transactions.
        catalogue, found, known = await asyncio.gather(
            read(store.load_catalogue), read(store.load_seats),
            read(store.load_keys, host.settings.inventory_keys_in_memory))
        if catalogue is None:
            return None
        inv = Inventory()
        owners = store.fill_inventory(inv, catalogue, found)
        owner = cls(host, event_id, catalogue, inv, owners, known)
        for hold in inv.holds.values():
            host.schedule(event_id, hold)
        return owner

    @property
    def hot(self) -> bool:
        return bool(self.catalogue.event.get("hot"))

    def counts(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "ticket_types": self.inv.counts(),
                "holds": len(self.inv.holds)}

    def idle(self, now: float, idle_seconds: float) -> bool:
        return (not self.inv.holds and not self.in_flight and not self.mutate.locked()
                and now - self.last_used >= idle_seconds)

    @asynccontextmanager
    async def changing(self) -> AsyncIterator[None]:
        async with self.mutate:
            if self.dropped:
                raise Dropped(self.event_id)
            yield

    # --- the catalogue ---
    async def ready(self) -> dict[str, Any]:
        return self.counts()

    async def refresh(self) -> dict[str, Any]:
        """Re-read the event and its ticket types (after the organizer changed them)."""
        async with self.host.sessions() as session:
            catalogue = await store.load_catalogue(session, self.event_id)
        if catalogue is None:
            raise NotFound(f"no event {self.event_id}")
        for tt, rules in catalogue.rules.items():
            self.inv.set_ticket_type(tt, rules.quantity, rules.per_user_limit)
        self.catalogue = catalogue
        return self.counts()

    # --- reserve (hot path) ---
    async def reserve(self, user_id: str, ticket_type_id: str, quantity: int,
                      payment_mode: str = "full", idempotency_key: str | None = None,
                      correlation_id: str = "-") -> dict[str, Any]:
        key = (user_id, idempotency_key) if idempotency_key else None
        if key and key in self.by_key:
            return await self._replay(key)
        try:
            return await self._reserve(user_id, ticket_type_id, quantity, payment_mode,
                                       idempotency_key, correlation_id)
        except (Conflict, Forbidden, NotFound):
            # A refusal may be the retry of a key this owner no longer keeps in memory (the
            # database refuses a key twice, so a retried success lands here too).
            earlier = await self._stored(key) if key and self.forgets_keys else None
            if earlier is None:
                raise
            return earlier

    @property
    def forgets_keys(self) -> bool:
        """Whether some idempotency keys of this event are in Postgres only."""
        return not self.loaded_every_key or self.by_key.evicted > 0

    async def _reserve(self, user_id: str, ticket_type_id: str, quantity: int,
                       payment_mode: str, idempotency_key: str | None,
                       correlation_id: str) -> dict[str, Any]:
        key = (user_id, idempotency_key) if idempotency_key else None
        if ticket_type_id not in self.catalogue.rules:
            raise NotFound(f"no ticket type {ticket_type_id} for event {self.event_id}")
        if self.catalogue.event["visibility"] == "group":
            async with self.host.sessions() as session:
                member = await store.is_group_member(session, self.catalogue.event["group_id"],
                                                     user_id)
            if not member:
                raise Forbidden("only members of the event's group may register")
            if key and key in self.by_key:  # the same key arrived while we awaited
                return await self._replay(key)
        if self.dropped:
            raise Dropped(self.event_id)
        check_can_register(self.catalogue.event["status"], self.catalogue.rules[ticket_type_id],
                           datetime.now(UTC))
        decision = self._decide(user_id, ticket_type_id, quantity, payment_mode,
                                idempotency_key, correlation_id,
                                self.host.settings.reservation_ttl_seconds)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if key:
            self.by_key[key] = answer
        self.in_flight += 1
        try:
            await self.host.commit(decision)
        except BaseException as exc:
            self._undo(decision, answer, exc)
            raise
        finally:
            self.in_flight -= 1
        self._answer(decision, answer)
        return await answer

    async def _stored(self, key: tuple[str, str]) -> dict[str, Any] | None:
        """The registration of this event that ``key`` produced, as Postgres has it."""
        async with self.host.sessions() as session:
            registration_id = await store.load_key(session, *key)
            row = (await store.load_registration(session, registration_id)
                   if registration_id else None)
        if row is None or row["event_id"] != self.event_id:
            return None
        self.by_key[key] = row["id"]
        return registration_view(row)

    def _decide(self, user_id: str, ticket_type_id: str, quantity: int, payment_mode: str,
                idempotency_key: str | None, correlation_id: str,
                ttl_seconds: float) -> NewRegistration:
        """Check and take seats in one synchronous step (never across an ``await``)."""
        rules = self.catalogue.rules[ticket_type_id]
        charge = charge_for(rules, quantity, payment_mode)
        registration_id, reservation_id = str(uuid.uuid4()), str(uuid.uuid4())
        if rules.is_free:
            self.inv.take_confirmed(ticket_type_id, user_id, quantity)
            status, hold_id, expires_at = RegistrationStatus.CONFIRMED, None, None
        else:
            expires = time.time() + ttl_seconds
            hold = self.inv.hold(Hold(reservation_id, ticket_type_id, user_id, quantity,
                                      expires))
            self.hold_owner[reservation_id] = registration_id
            self.host.schedule(self.event_id, hold)
            status, hold_id = RegistrationStatus.PENDING_PAYMENT, reservation_id
            expires_at = store.from_epoch(expires)
        return NewRegistration(
            registration_id, hold_id, self.event_id, self.catalogue.event["organization_id"],
            ticket_type_id, user_id, quantity, status.value, payment_mode, charge.amount,
            charge.currency, charge.prepayment_amount, expires_at, idempotency_key,
            correlation_id)

    async def _replay(self, key: tuple[str, str]) -> dict[str, Any]:
        """The registration an idempotency key already produced on this event.

        The newest keys of this event are in memory (loaded on activation, added on each
        decision), so this reads the database only to answer a retry whose first answer was
        lost; a key older than those is found by ``_stored`` when its retry is refused."""
        earlier = self.by_key[key]
        if isinstance(earlier, asyncio.Future):
            return await asyncio.shield(earlier)
        async with self.host.sessions() as session:
            row = await store.load_registration(session, earlier)
        assert row is not None
        return registration_view(row)

    def _answer(self, d: NewRegistration, answer: asyncio.Future[dict[str, Any]]) -> None:
        if d.idempotency_key:  # later retries with this key get this registration
            self.by_key[(d.user_id, d.idempotency_key)] = d.registration_id
        answer.set_result(registration_view({
            "id": d.registration_id, "event_id": d.event_id,
            "ticket_type_id": d.ticket_type_id, "user_id": d.user_id,
            "quantity": d.quantity, "status": d.status, "payment_mode": d.payment_mode,
            "amount": d.amount, "currency": d.currency,
            "prepayment_amount": d.prepayment_amount, "reservation_id": d.reservation_id,
            "expires_at": d.expires_at, "created_at": datetime.now(UTC)}))

    def _undo(self, d: NewRegistration, answer: asyncio.Future[dict[str, Any]],
              exc: BaseException) -> None:
        """The decision was not written: its seats and its key go back."""
        if d.reservation_id:
            self.inv.release(d.reservation_id)
            self.hold_owner.pop(d.reservation_id, None)
        else:
            self.inv.release_confirmed(d.ticket_type_id, d.user_id, d.quantity)
        if d.idempotency_key:
            self.by_key.pop((d.user_id, d.idempotency_key), None)
        answer.set_exception(exc)
        answer.exception()  # retrieved: waiters on the same key get it, nobody else must

    # --- changes to existing registrations ---
    async def confirm_payment(self, registration_id: str) -> dict[str, Any]:
        """A captured payment: confirm; after expiry only while seats remain, else refund_due."""
        async with self.changing():
            row = await self._registration(registration_id)
            status, hold_id = row["status"], row["reservation_id"]
            if row["refund_due"] or status in (RegistrationStatus.CONFIRMED,
                                               RegistrationStatus.CHECKED_IN):
                return registration_view(row)  # decided before: a redelivery changes nothing
            if status == RegistrationStatus.PENDING_PAYMENT and hold_id in self.inv.holds:
                async with self._unit() as uow:
                    await store.end_reservation(uow, hold_id, "confirmed")
                    await store.set_registration_status(uow, registration_id, status, "confirmed")
                self.inv.confirm(hold_id)
                self.hold_owner.pop(hold_id, None)
            elif status in (RegistrationStatus.PENDING_PAYMENT, RegistrationStatus.EXPIRED):
                await self._confirm_late(row)
            else:  # cancelled before the money arrived
                await self._mark_refund_due(row, "registration-cancelled")
            return registration_view(await self._registration(registration_id))

    async def _confirm_late(self, row: dict[str, Any]) -> None:
        if row["reservation_id"]:  # expired in the database (the sweep) but still counted here
            await self._expire([row["reservation_id"]])
            row = await self._registration(row["id"])
        try:
            self.inv.take_confirmed(row["ticket_type_id"], row["user_id"], row["quantity"])
        except Conflict:
            await self._mark_refund_due(row, "sold-out-after-expiry")
            return
        try:
            async with self._unit() as uow:
                await store.set_registration_status(uow, row["id"], row["status"], "confirmed",
                                                    end_reason=None)
        except BaseException:
            self.inv.release_confirmed(row["ticket_type_id"], row["user_id"], row["quantity"])
            raise

    async def _mark_refund_due(self, row: dict[str, Any], reason: str) -> None:
        async with self._unit() as uow:
            await store.set_registration_status(uow, row["id"], row["status"], row["status"],
                                                refund_due=True, end_reason=reason)
            uow.publish("registration.cancelled", {
                "registration_id": row["id"], "event_id": self.event_id,
                "user_id": row["user_id"], "reason": reason}, aggregate_id=self.event_id)

    async def cancel(self, registration_id: str, reason: str) -> dict[str, Any]:
        """Cancel by the attendee or by a full refund; seats return exactly once."""
        async with self.changing():
            row = await self._registration(registration_id)
            status = row["status"]
            if status in (RegistrationStatus.CANCELLED, RegistrationStatus.EXPIRED):
                return registration_view(row)
            transition_registration(status, "cancel")
            async with self._unit() as uow:
                if row["reservation_id"] and status == RegistrationStatus.PENDING_PAYMENT:
                    await store.end_reservation(uow, row["reservation_id"], "cancelled")
                changed = await store.set_registration_status(
                    uow, registration_id, status, "cancelled", end_reason=reason)
                if changed:
                    uow.publish("registration.cancelled", {
                        "registration_id": registration_id, "event_id": self.event_id,
                        "user_id": row["user_id"], "reason": reason},
                        aggregate_id=self.event_id)
            if changed and status == RegistrationStatus.PENDING_PAYMENT:
                self.inv.release(row["reservation_id"])
                self.hold_owner.pop(row["reservation_id"], None)
            elif changed:
                self.inv.release_confirmed(row["ticket_type_id"], row["user_id"],
                                           row["quantity"])
            if changed:
                await self._offer_waitlist({row["ticket_type_id"]})
            return registration_view(await self._registration(registration_id))

    async def _registration(self, registration_id: str) -> dict[str, Any]:
        async with self.host.sessions() as session:
            row = await store.load_registration(session, registration_id)
        if row is None or row["event_id"] != self.event_id:
            raise NotFound(f"no registration {registration_id}")
        return row

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work that first checks this host still owns the event."""
        async with UnitOfWork(self.host.sessions, "event") as uow:
            await self.host.fence(uow.session, self.event_id)
            yield uow

    # --- expiry ---
    async def expire_due(self) -> int:
        """Expire every hold whose time is up (the host's timers and the sweep call this)."""
        async with self.changing():
            due = [h.id for h in self.inv.due(time.time())]
            return await self._expire(due) if due else 0

    async def _expire(self, hold_ids: list[str]) -> int:
        statuses = await store.expire_holds(self.host.sessions, self.event_id, hold_ids,
                                            self.host.fence)
        freed: set[str] = set()
        for hold_id in hold_ids:
            status = statuses.get(hold_id)
            if status == "confirmed":
                self.inv.confirm(hold_id)
            elif status in ("expired", "cancelled"):
                hold = self.inv.release(hold_id)
                if hold is not None:
                    freed.add(hold.ticket_type_id)
            if status in ("confirmed", "expired", "cancelled"):
                self.hold_owner.pop(hold_id, None)
        await self._offer_waitlist(freed)
        return len([h for h in hold_ids if statuses.get(h) in ("expired", "cancelled")])

    async def _offer_waitlist(self, ticket_type_ids: set[str]) -> None:
        """Freed seats go to the waiting list first: the next entry gets a held offer."""
        for tt in ticket_type_ids:
            while self.inv.available(tt) > 0:
                async with self.host.sessions() as session:
                    entry = await store.next_waiting(session, self.event_id, tt,
                                                     self.inv.available(tt))
                if entry is None:
                    break
                try:
                    offer = self._decide(entry["user_id"], tt, entry["quantity"], "full", None,
                                         "-", self.host.settings.waitlist_offer_ttl_seconds)
                except Conflict:  # past the per-user limit by now
                    await store.skip_waiting(self.host.sessions, entry["id"])
                    continue
                try:
                    await store.write_offer(self.host.sessions, offer, entry["id"],
                                            self.host.fence)
                except Exception as exc:
                    self._undo(offer, asyncio.get_running_loop().create_future(), exc)
                    raise
