"""The per-event inventory actor: the only place seats of one event are given out.

One named, detached actor per event (``inventory:<event_id>`` in namespace ``afisha``), created
on demand by whoever needs it first (gateway or event service) with ``get_if_exists``. Nobody
owns its lifetime: it is detached so it outlives the replica that happened to create it, it
restarts after a crash (``max_restarts=-1``) and rebuilds from Postgres, and it ends itself after
``inventory_idle_seconds`` without requests and without open holds.

Decisions are synchronous calls on the pure ``Inventory`` (never across an ``await``). A decision
is persisted before the caller hears it: requests decided while a write is in flight (or within
``inventory_batch_window_ms``) are written together in one transaction (group commit).
Changes to existing registrations (payment, cancellation, expiry) run one at a time under a lock.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from actors import store
from actors.store import NewRegistration
from cluster.settings import Settings
from messaging.outbox import UnitOfWork
from serve.common.errors import Conflict, Forbidden, NotFound, ProblemError, ServiceUnavailable
from serve.common.logs import configure_logging, get_logger
from serve.events.domain import (
    RegistrationStatus,
    charge_for,
    check_can_register,
    transition_registration,
)
from serve.events.inventory import Hold, Inventory
from serve.events.views import registration_view
from storage.engine import create_engine, is_overload, sessionmaker

NAMESPACE = "afisha"
Pending = tuple[NewRegistration, "asyncio.Future[dict[str, Any]]"]


def actor_name(event_id: str) -> str:
    return f"inventory:{event_id}"


class InventoryActor:
    def __init__(self, config: dict[str, Any], event_id: str) -> None:
        self.settings = Settings.from_runtime(config)
        configure_logging(self.settings.log_level)
        self.log = get_logger("inventory")
        self.event_id = event_id
        # One connection (two at most): the group commit is serial, and there is an actor per
        # event on sale, each with its own pool, against the server's max_connections.
        self.engine = create_engine(self.settings, "event", pool_size=1, max_overflow=1)
        self.sessions = sessionmaker(self.engine)
        self.inv = Inventory()
        self.catalogue: store.Catalogue | None = None
        self.hold_owner: dict[str, str] = {}  # reservation id -> registration id
        # (user, Idempotency-Key) -> the answer being written, or the registration id.
        self.by_key: dict[tuple[str, str], asyncio.Future[dict[str, Any]] | str] = {}
        self.pending: list[Pending] = []
        self.flusher: asyncio.Task[None] | None = None
        self.housekeeper: asyncio.Task[None] | None = None
        self.mutate = asyncio.Lock()
        self.loading = asyncio.Lock()
        self.last_used = time.monotonic()
        self.closing = False

    # --- lifecycle ---
    async def ready(self) -> dict[str, Any]:
        await self._ensure_loaded()
        return self.counts()

    async def _ensure_loaded(self, touch: bool = True) -> store.Catalogue:
        if self.closing:
            raise ActorClosing(self.event_id)
        if touch:
            self.last_used = time.monotonic()
        if self.catalogue is None:
            async with self.loading:
                if self.catalogue is None:
                    await self._load()
        assert self.catalogue is not None
        return self.catalogue

    async def _load(self) -> None:
        async with self.sessions() as session:
            catalogue = await store.load_catalogue(session, self.event_id)
            if catalogue is None:  # nothing to guard: end this actor soon
                if self.housekeeper is None:
                    self.housekeeper = asyncio.get_running_loop().create_task(
                        self._deactivate_later())
                raise NotFound(f"no event {self.event_id}")
            inv = Inventory()
            owners = await store.load_inventory(session, self.event_id, catalogue, inv)
            keys = await store.load_keys(session, self.event_id)
        self.inv, self.hold_owner, self.catalogue = inv, owners, catalogue
        self.by_key = dict(keys)
        self.housekeeper = asyncio.get_running_loop().create_task(self._housekeeping())
        self.log.info("inventory of %s loaded: %s", self.event_id, inv.counts())

    async def refresh(self) -> dict[str, Any]:
        """Re-read the event and its ticket types (after the organizer changed them)."""
        await self._ensure_loaded()
        async with self.sessions() as session:
            catalogue = await store.load_catalogue(session, self.event_id)
        if catalogue is None:
            raise NotFound(f"no event {self.event_id}")
        for tt, rules in catalogue.rules.items():
            self.inv.set_ticket_type(tt, rules.quantity, rules.per_user_limit)
        self.catalogue = catalogue
        return self.counts()

    def counts(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "ticket_types": self.inv.counts(),
                "holds": len(self.inv.holds), "pid": os.getpid()}

    # --- reserve (hot path) ---
    async def reserve(self, user_id: str, ticket_type_id: str, quantity: int,
                      payment_mode: str = "full", idempotency_key: str | None = None,
                      correlation_id: str = "-") -> dict[str, Any]:
        catalogue = await self._ensure_loaded()
        key = (user_id, idempotency_key) if idempotency_key else None
        if key and key in self.by_key:
            return await self._replay(key)
        if ticket_type_id not in catalogue.rules:
            raise NotFound(f"no ticket type {ticket_type_id} for event {self.event_id}")
        if catalogue.event["visibility"] == "group":
            async with self.sessions() as session:
                member = await store.is_group_member(session, catalogue.event["group_id"],
                                                     user_id)
            if not member:
                raise Forbidden("only members of the event's group may register")
            if key and key in self.by_key:  # the same key arrived while we awaited
                return await self._replay(key)
        catalogue = self.catalogue or catalogue  # as refreshed meanwhile
        check_can_register(catalogue.event["status"], catalogue.rules[ticket_type_id],
                           datetime.now(UTC))
        decision = self._decide(user_id, ticket_type_id, quantity, payment_mode,
                                idempotency_key, correlation_id,
                                self.settings.reservation_ttl_seconds)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if key:
            self.by_key[key] = future
        self.pending.append((decision, future))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.get_running_loop().create_task(self._flush())
        return await asyncio.shield(future)

    async def reserve_many(self, requests: list[tuple[Any, ...]]) -> list[tuple[bool, Any]]:
        """Several ``reserve`` calls in one (caller-side batching): ``(True, registration)``
        or ``(False, error)`` for each, in order."""
        results = await asyncio.gather(*(self.reserve(*r) for r in requests),
                                       return_exceptions=True)
        if any(isinstance(r, ActorClosing) for r in results):
            raise ActorClosing(self.event_id)
        return [(True, r) if not isinstance(r, BaseException)
                else (False, r if isinstance(r, ProblemError) else RuntimeError(repr(r)))
                for r in results]

    def _decide(self, user_id: str, ticket_type_id: str, quantity: int, payment_mode: str,
                idempotency_key: str | None, correlation_id: str,
                ttl_seconds: float) -> NewRegistration:
        """Check and take seats in one synchronous step (never across an ``await``)."""
        assert self.catalogue is not None
        rules = self.catalogue.rules[ticket_type_id]
        charge = charge_for(rules, quantity, payment_mode)
        registration_id, reservation_id = str(uuid.uuid4()), str(uuid.uuid4())
        if rules.is_free:
            self.inv.take_confirmed(ticket_type_id, user_id, quantity)
            status, hold_id, expires_at = RegistrationStatus.CONFIRMED, None, None
        else:
            expires = time.time() + ttl_seconds
            self.inv.hold(Hold(reservation_id, ticket_type_id, user_id, quantity, expires))
            self.hold_owner[reservation_id] = registration_id
            status, hold_id = RegistrationStatus.PENDING_PAYMENT, reservation_id
            expires_at = store.from_epoch(expires)
        return NewRegistration(
            registration_id, hold_id, self.event_id, self.catalogue.event["organization_id"],
            ticket_type_id, user_id, quantity, status.value, payment_mode, charge.amount,
            charge.currency, charge.prepayment_amount, expires_at, idempotency_key,
            correlation_id)

    async def _replay(self, key: tuple[str, str]) -> dict[str, Any]:
        """The registration an idempotency key already produced on this event.

        Every key of this event is in memory (loaded on start, added on each decision), so
        this reads the database only to answer a retry whose first answer was lost."""
        earlier = self.by_key[key]
        if isinstance(earlier, asyncio.Future):
            return await asyncio.shield(earlier)
        async with self.sessions() as session:
            row = await store.load_registration(session, earlier)
        assert row is not None
        return registration_view(row)

    async def _flush(self) -> None:
        window = self.settings.inventory_batch_window_ms / 1000
        while self.pending:
            if window:
                await asyncio.sleep(window)
            batch, self.pending = self.pending, []
            try:
                await store.write_registrations(self.sessions, [d for d, _ in batch])
            except IntegrityError:
                # One bad row (an idempotency key reused on another event) must not sink the
                # rest: write them one by one.
                for item in batch:
                    await self._write_alone(item)
            except Exception as exc:
                self.log.exception("writing %d registrations failed", len(batch))
                answer: BaseException = exc
                if is_overload(exc):  # no seat was taken: the client may simply retry
                    answer = ServiceUnavailable("no database connection to record the "
                                                "reservation; retry", slug="overloaded",
                                                retry_after=1)
                for item in batch:
                    self._undo(item, answer)
            else:
                for decision, future in batch:
                    self._answer(decision, future)

    async def _write_alone(self, item: Pending) -> None:
        try:
            await store.write_registrations(self.sessions, [item[0]])
        except IntegrityError:
            self._undo(item, Conflict("this Idempotency-Key was already used for another "
                                      "request", slug="idempotency-key-reused"))
        except Exception as exc:
            self._undo(item, exc)
        else:
            self._answer(*item)

    def _answer(self, d: NewRegistration, future: asyncio.Future[dict[str, Any]]) -> None:
        if d.idempotency_key:  # later retries with this key get this registration
            self.by_key[(d.user_id, d.idempotency_key)] = d.registration_id
        if not future.done():
            future.set_result(registration_view({
                "id": d.registration_id, "event_id": d.event_id,
                "ticket_type_id": d.ticket_type_id, "user_id": d.user_id,
                "quantity": d.quantity, "status": d.status, "payment_mode": d.payment_mode,
                "amount": d.amount, "currency": d.currency,
                "prepayment_amount": d.prepayment_amount, "reservation_id": d.reservation_id,
                "expires_at": d.expires_at, "created_at": datetime.now(UTC)}))

    def _undo(self, item: Pending, exc: BaseException) -> None:
        d, future = item
        if d.reservation_id:
            self.inv.release(d.reservation_id)
            self.hold_owner.pop(d.reservation_id, None)
        else:
            self.inv.release_confirmed(d.ticket_type_id, d.user_id, d.quantity)
        if d.idempotency_key:
            self.by_key.pop((d.user_id, d.idempotency_key), None)
        if not future.done():
            future.set_exception(exc)

    # --- changes to existing registrations ---
    async def confirm_payment(self, registration_id: str) -> dict[str, Any]:
        """A captured payment: confirm; after expiry only while seats remain, else refund_due."""
        await self._ensure_loaded()
        async with self.mutate:
            row = await self._registration(registration_id)
            status, hold_id = row["status"], row["reservation_id"]
            if row["refund_due"] or status in (RegistrationStatus.CONFIRMED,
                                               RegistrationStatus.CHECKED_IN):
                return registration_view(row)  # decided before: a redelivery changes nothing
            if status == RegistrationStatus.PENDING_PAYMENT and hold_id in self.inv.holds:
                async with UnitOfWork(self.sessions, "event") as uow:
                    await store.end_reservation(uow, hold_id, "confirmed")
                    await store.set_registration_status(uow, registration_id, status, "confirmed")
                self.inv.confirm(hold_id)
                self.hold_owner.pop(hold_id, None)
            elif status in (RegistrationStatus.PENDING_PAYMENT, RegistrationStatus.EXPIRED):
                await self._confirm_late(row)
            else:  # cancelled before the money arrived
                await self._mark_refund_due(row, "registration-cancelled")
            fresh = await self._registration(registration_id)
            return registration_view(fresh)

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
            async with UnitOfWork(self.sessions, "event") as uow:
                await store.set_registration_status(uow, row["id"], row["status"], "confirmed",
                                                    end_reason=None)
        except BaseException:
            self.inv.release_confirmed(row["ticket_type_id"], row["user_id"], row["quantity"])
            raise

    async def _mark_refund_due(self, row: dict[str, Any], reason: str) -> None:
        async with UnitOfWork(self.sessions, "event") as uow:
            await store.set_registration_status(uow, row["id"], row["status"], row["status"],
                                                refund_due=True, end_reason=reason)
            uow.publish("registration.cancelled", {
                "registration_id": row["id"], "event_id": self.event_id,
                "user_id": row["user_id"], "reason": reason}, aggregate_id=self.event_id)

    async def cancel(self, registration_id: str, reason: str) -> dict[str, Any]:
        """Cancel by the attendee or by a full refund; seats return exactly once."""
        await self._ensure_loaded()
        async with self.mutate:
            row = await self._registration(registration_id)
            status = row["status"]
            if status in (RegistrationStatus.CANCELLED, RegistrationStatus.EXPIRED):
                return registration_view(row)
            transition_registration(status, "cancel")
            async with UnitOfWork(self.sessions, "event") as uow:
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
        async with self.sessions() as session:
            row = await store.load_registration(session, registration_id)
        if row is None or row["event_id"] != self.event_id:
            raise NotFound(f"no registration {registration_id}")
        return row

    # --- expiry and idleness ---
    async def expire_due(self, touch: bool = True) -> int:
        """Expire every hold whose time is up (the sweep calls this too)."""
        await self._ensure_loaded(touch)
        async with self.mutate:
            due = [h.id for h in self.inv.due(time.time())]
            return await self._expire(due) if due else 0

    async def _expire(self, hold_ids: list[str]) -> int:
        statuses = await store.expire_holds(self.sessions, self.event_id, hold_ids)
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
                async with self.sessions() as session:
                    entry = await store.next_waiting(session, self.event_id, tt,
                                                     self.inv.available(tt))
                if entry is None:
                    break
                try:
                    offer = self._decide(entry["user_id"], tt, entry["quantity"], "full", None,
                                         "-", self.settings.waitlist_offer_ttl_seconds)
                except Conflict:  # past the per-user limit by now
                    await store.skip_waiting(self.sessions, entry["id"])
                    continue
                try:
                    await store.write_offer(self.sessions, offer, entry["id"])
                except Exception as exc:
                    self._undo((offer, asyncio.get_running_loop().create_future()), exc)
                    raise

    def idle(self) -> bool:
        return (not self.inv.holds and not self.pending and not self.mutate.locked()
                and (self.flusher is None or self.flusher.done())
                and time.monotonic() - self.last_used >= self.settings.inventory_idle_seconds)

    async def _housekeeping(self) -> None:
        while True:
            nxt = self.inv.next_expiry()
            wait = 1.0 if nxt is None else min(max(nxt - time.time(), 0.01), 1.0)
            await asyncio.sleep(wait)
            try:
                await self.expire_due(touch=False)
            except Exception:
                self.log.exception("expiring holds of %s failed", self.event_id)
            if self.idle():
                await self.deactivate()
                return

    async def _deactivate_later(self) -> None:
        await asyncio.sleep(1.0)
        await self.deactivate()

    async def deactivate(self) -> None:
        """End this actor for good (its state is in Postgres); the next request recreates it."""
        import ray

        self.closing = True
        self.log.info("inventory of %s deactivates (idle)", self.event_id)
        await self.engine.dispose()
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


class ActorClosing(ProblemError):
    """The actor is ending itself; the client retries against a new one."""

    status, slug, title = 503, "unavailable", "Service unavailable"
