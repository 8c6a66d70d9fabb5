"""An inventory host: one Ray actor process holding the inventory owners of many events.

A fixed set of shared hosts (``inventory-host-<i>``, ``AFISHA_INVENTORY_HOSTS`` of them) own
the events of their virtual shards (``actors.shards``); an event declared hot gets a host of
its own (``inventory-hot-<event id>``). Hosts are named, detached and restarted by Ray. In each:

- owners (``actors.owner.EventOwner``) are activated from Postgres on first use and dropped
  from memory when idle (no process ends);
- one flusher group-commits the reservations of every event decided within a short window, in
  one transaction that first checks the host's fence;
- one timer heap expires the holds of every event it owns; a starting host puts one timer
  per event with open holds at the first hold's expiry, and activates the event then.

Fencing: on start a host takes a new epoch for its scopes (its shards, or its hot event) in
``inventory_fences``; every write it makes checks, in the same transaction, that the epoch is
still its own and that the event is still of its kind (hot or not), with share locks. A host
that Ray replaced (or whose event moved) can therefore never commit a sale again.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import time
from collections import defaultdict
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from actors import shards, store
from actors.commit import GroupCommit, Lost, UnknownOutcome
from actors.owner import Dropped, EventOwner, OwnerMoved
from actors.store import NewRegistration
from cluster.settings import Settings
from serve.common.errors import Conflict, NotFound, ProblemError, ServiceUnavailable
from serve.common.logs import configure_logging, get_logger
from serve.events.inventory import Hold
from storage.engine import create_engine, is_overload, read_sessionmaker, sessionmaker

CALLS = frozenset({"ready", "refresh", "reserve", "confirm_payment", "cancel", "expire_due"})
Pending = tuple[NewRegistration, "asyncio.Future[None]"]
# The hold id of a timer that activates an event whose holds were open when the host started.
RESUME = ""


class Fenced(ServiceUnavailable):
    """This host no longer owns the scope (a newer incarnation took it); the caller retries."""


class InventoryHost:
    def __init__(self, config: dict[str, Any], index: int | None = None,
                 hot_event: str | None = None) -> None:
        self.settings = Settings.from_runtime(config)
        configure_logging(self.settings.log_level)
        self.log = get_logger("inventory")
        self.index, self.hot_event = index, hot_event
        if hot_event is not None:
            self.name = shards.hot_host_name(hot_event)
            self.scopes = {shards.event_scope(hot_event)}
        else:
            assert index is not None
            self.name = shards.host_name(index)
            self.scopes = {shards.shard_scope(s) for s in
                           shards.shards_of_host(index, self.settings.inventory_hosts)}
        # Kept open: an activation reads on three connections at once, the flusher writes on one.
        self.engine = create_engine(self.settings, "event", pool_size=4, max_overflow=4)
        self.sessions = sessionmaker(self.engine)
        self.reads = read_sessionmaker(self.engine)
        self.group = GroupCommit(self.settings)
        self.epoch: int | None = None
        self.lost: set[str] = set()  # scopes a newer owner took from this host
        self.owners: dict[str, EventOwner] = {}
        self.activating: dict[str, asyncio.Future[EventOwner]] = {}
        self.pending: list[Pending] = []
        self.flusher: asyncio.Task[None] | None = None
        self.timers: list[tuple[float, str, str]] = []  # (expires_at, event id, hold id)
        self.wakeup = asyncio.Event()
        self.starting: asyncio.Future[None] | None = None
        self.empty_since: float | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.commits = 0
        self.committed = 0

    # --- lifecycle ---
    async def _started(self) -> None:
        """Take the fence on first use (on the actor's event loop), once per incarnation."""
        if self.starting is None or (self.starting.done() and self.starting.exception()):
            self.starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self.starting)

    async def _start(self) -> None:
        self.epoch = await store.acquire_fences(self.sessions, sorted(self.scopes),
                                                f"{self.name}@{os.getpid()}")
        self.log.info("%s holds epoch %d for %d scope(s)", self.name, self.epoch,
                      len(self.scopes))
        await self.group.open()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._housekeeping()),
                      loop.create_task(self._resume_holds())]

    async def _resume_holds(self) -> None:
        """Put a timer for each of this host's events with open holds at its first expiry; the
        event is activated when that timer fires (or a caller needs it first), so a starting
        host does not rebuild every such event at once while it serves."""
        try:
            async with self.sessions() as session:
                firsts = await store.first_expiries(session, self.hot_event)
            for event_id, expires_at in firsts:
                if self._mine(event_id):
                    heapq.heappush(self.timers, (expires_at, event_id, RESUME))
            self.wakeup.set()
        except Exception:
            self.log.exception("resuming the holds of %s failed", self.name)

    async def close(self) -> None:
        """Stop the timers and close the pool (a host used in-process, e.g. by a test)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.group.close()
        await self.engine.dispose()

    def _mine(self, event_id: str) -> bool:
        if self.hot_event is not None:
            return event_id == self.hot_event
        return shards.shard_scope(shards.shard_of(event_id)) in self.scopes

    def _scope(self, event_id: str) -> str:
        if self.hot_event is not None:
            return shards.event_scope(event_id)
        return shards.shard_scope(shards.shard_of(event_id))

    async def configure(self, config: dict[str, Any]) -> int:
        """Adopt newer settings (TTLs, windows) from a caller; the database stays the same."""
        settings = Settings.from_runtime(config)
        if settings.database_url_for("event") != self.settings.database_url_for("event"):
            raise ValueError("an inventory host cannot change its database")
        self.settings = settings
        return os.getpid()

    async def stats(self) -> dict[str, Any]:
        await self._started()
        return {"name": self.name, "pid": os.getpid(), "epoch": self.epoch,
                "events": sorted(self.owners), "timers": len(self.timers),
                "commits": self.commits, "committed": self.committed, "lost": sorted(self.lost)}

    # --- owners ---
    async def _owner(self, event_id: str) -> EventOwner:
        owner = self.owners.get(event_id)
        if owner is not None:  # the hot path; a lost scope shows at its next commit
            owner.last_used = time.monotonic()
            return owner
        await self._started()
        if self._scope(event_id) in self.lost or not self._mine(event_id):
            raise Fenced(f"{self.name} does not own event {event_id} (any more); retry")
        activating = self.activating.get(event_id)
        if activating is None:
            activating = asyncio.ensure_future(self._activate(event_id))
            self.activating[event_id] = activating
            activating.add_done_callback(lambda _: self.activating.pop(event_id, None))
        return await asyncio.shield(activating)

    async def _activate(self, event_id: str) -> EventOwner:
        started = time.perf_counter()
        owner = await EventOwner.activate(self, event_id)
        if owner is None:
            raise NotFound(f"no event {event_id}")
        if owner.hot != (self.hot_event is not None):
            raise OwnerMoved(f"event {event_id} is {'hot' if owner.hot else 'not hot'}; "
                             "its inventory lives on another host")
        self.owners[event_id] = owner
        self.log.info("inventory of %s active on %s in %.1f ms: %s", event_id, self.name,
                      (time.perf_counter() - started) * 1000, owner.inv.counts())
        return owner

    def _drop(self, event_id: str) -> None:
        owner = self.owners.pop(event_id, None)
        if owner is not None:
            owner.dropped = True

    def _unknown(self, batch: list[Pending], why: UnknownOutcome) -> None:
        """Whether ``batch`` was written is unknown: its events are rebuilt from Postgres at
        their next use, so memory never counts a seat differently from the database, and
        its callers are told to retry (their idempotency keys answer what was written)."""
        event_ids = {d.event_id for d, _ in batch}
        self.log.warning("%s rebuilds %d event(s) from Postgres: %s", self.name, len(event_ids),
                         why)
        for event_id in event_ids:
            self._drop(event_id)
        for _, done in batch:
            _fail(done, ServiceUnavailable("the database connection broke while the "
                                           "reservation was recorded; retry",
                                           slug="overloaded", retry_after=1))

    async def drop(self, event_id: str) -> bool:
        """Forget an event now (it is moving to another host); True if it was active."""
        await self._started()
        owner = self.owners.get(event_id)
        if owner is None:
            return False
        owner.dropped = True  # new decisions are refused (and retried) from now on
        async with owner.mutate:  # a change under way finishes first
            while owner.in_flight:  # noqa: ASYNC110 - decisions being written (a few ms)
                await asyncio.sleep(0.005)
            self.owners.pop(event_id, None)
        return True

    # --- calls ---
    async def call(self, event_id: str, method: str, args: tuple[Any, ...] = (),
                   kwargs: dict[str, Any] | None = None) -> Any:
        if method not in CALLS:
            raise ValueError(f"no inventory call {method!r}")
        for _ in range(100):
            owner = await self._owner(event_id)
            try:
                return await getattr(owner, method)(*args, **(kwargs or {}))
            except Dropped:  # it is leaving memory: wait until it has, then use a fresh one
                await asyncio.sleep(0.01)
        raise ServiceUnavailable("the event's inventory is moving; retry")

    async def call_if_active(self, event_id: str, method: str,
                             args: tuple[Any, ...] = ()) -> Any:
        """Only when the event is active here (``None`` otherwise): changes to an event reach a
        live owner at once, and an inactive one reads them when it activates."""
        if event_id not in self.owners:
            return None
        try:
            return await self.call(event_id, method, args)
        except ProblemError:
            return None

    async def reserve_batch(self, requests: list[tuple[Any, ...]]) -> list[tuple[bool, Any]]:
        """Reservations for any events of this host in one call (the gateway's batch):
        ``(True, registration)`` or ``(False, error)`` for each, in order."""
        results = await asyncio.gather(
            *(self.call(r[0], "reserve", r[1:]) for r in requests), return_exceptions=True)
        return [(True, r) if not isinstance(r, BaseException)
                else (False, r if isinstance(r, ProblemError) else RuntimeError(repr(r)))
                for r in results]

    # --- group commit across events ---
    def commit(self, decision: NewRegistration) -> asyncio.Future[None]:
        """Persist ``decision`` with whatever else is decided within the window."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((decision, done))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.get_running_loop().create_task(self._flush())
        return done

    async def _flush(self) -> None:
        window = self.settings.inventory_batch_window_ms / 1000
        while self.pending:
            if window:
                await asyncio.sleep(window)
            batch, self.pending = self.pending, []
            await self._write(batch)

    async def _write(self, batch: list[Pending]) -> None:
        try:
            refused = await self._write_batch([d for d, _ in batch])
        except asyncpg.IntegrityConstraintViolationError:
            # One bad row (an idempotency key reused on another event) must not sink the rest.
            for item in batch:
                await self._write_alone(item)
            return
        except UnknownOutcome as exc:
            self._unknown(batch, exc)
            return
        except Exception as exc:
            self.log.exception("writing %d registrations failed", len(batch))
            answer: BaseException = exc
            if is_overload(exc) or isinstance(exc, Lost):  # no seat was taken: retry
                answer = ServiceUnavailable("no database connection to record the "
                                            "reservation; retry", slug="overloaded",
                                            retry_after=1)
            for _, done in batch:
                _fail(done, answer)
            return
        for decision, done in batch:
            if decision.event_id in refused:
                _fail(done, refused[decision.event_id])
            elif not done.done():
                done.set_result(None)

    async def _write_batch(self, batch: list[NewRegistration]) -> dict[str, BaseException]:
        """One statement for the decisions this host still owns; the others are refused
        (event id -> why) and their owners dropped."""
        assert self.epoch is not None
        refused: dict[str, BaseException] = {}
        while batch:
            event_ids = sorted({d.event_id for d in batch})
            scopes = sorted({self._scope(e) for e in event_ids})
            held, kind_ok = await self.group.write(batch, scopes, self.epoch, event_ids,
                                                   hot=self.hot_event is not None)
            bad = self._judge(event_ids, held, kind_ok)
            if not bad:
                self.commits += 1
                self.committed += len(batch)
                return refused
            refused.update(bad)
            batch = [d for d in batch if d.event_id not in bad]
        return refused

    async def _write_alone(self, item: Pending) -> None:
        decision, done = item
        try:
            refused = await self._write_batch([decision])
        except asyncpg.IntegrityConstraintViolationError:
            _fail(done, Conflict("this Idempotency-Key was already used for another request",
                                 slug="idempotency-key-reused"))
        except UnknownOutcome as exc:
            self._unknown([item], exc)
        except Exception as exc:
            _fail(done, exc)
        else:
            if refused:
                _fail(done, refused[decision.event_id])
            elif not done.done():
                done.set_result(None)

    async def _check(self, session: AsyncSession,
                     event_ids: list[str]) -> dict[str, BaseException]:
        """The events of ``event_ids`` this host may not write for, and why."""
        assert self.epoch is not None
        wanted = sorted({self._scope(e) for e in event_ids})
        held, kind_ok = await store.check_fences(session, wanted, self.epoch, event_ids,
                                                 hot=self.hot_event is not None)
        return self._judge(event_ids, held, kind_ok)

    def _judge(self, event_ids: list[str], held: set[str],
               kind_ok: set[str]) -> dict[str, BaseException]:
        """Of ``event_ids``, those whose scope is no longer held or that moved to another
        kind of host, and why; their owners are dropped."""
        bad: dict[str, BaseException] = {}
        for event_id in event_ids:
            scope = self._scope(event_id)
            if scope not in held:
                self.lost.add(scope)
                self.log.warning("%s lost %s to a newer owner", self.name, scope)
                bad[event_id] = Fenced(f"{self.name} no longer owns {scope}; retry")
            elif event_id not in kind_ok:
                bad[event_id] = OwnerMoved(f"event {event_id} moved to another host; retry")
        for event_id in bad:
            self._drop(event_id)
        return bad

    async def fence(self, session: AsyncSession, event_id: str) -> None:
        """For the owners' other writes: raise unless this host still owns ``event_id``."""
        bad = await self._check(session, [event_id])
        if bad:
            raise bad[event_id]

    # --- timers and idleness ---
    def schedule(self, event_id: str, hold: Hold) -> None:
        first = not self.timers or hold.expires_at < self.timers[0][0]
        heapq.heappush(self.timers, (hold.expires_at, event_id, hold.id))
        if first:
            self.wakeup.set()

    async def _housekeeping(self) -> None:
        while True:
            wait = 1.0
            if self.timers:
                wait = min(max(self.timers[0][0] - time.time(), 0.0), 1.0)
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), wait)
            try:
                await self._expire_due()
            except Exception:
                self.log.exception("expiring holds on %s failed", self.name)
            self._drop_idle()

    async def _expire_due(self) -> None:
        now = time.time()
        due: dict[str, set[str]] = defaultdict(set)
        resume: list[str] = []
        while self.timers and self.timers[0][0] <= now:
            _, event_id, hold_id = heapq.heappop(self.timers)
            if hold_id == RESUME:
                resume.append(event_id)
                continue
            owner = self.owners.get(event_id)
            if owner is not None and hold_id in owner.inv.holds:
                due[event_id].add(hold_id)
        for event_id in due:
            owner = self.owners.get(event_id)
            if owner is None:
                continue
            try:
                await owner.expire_due()
            except Dropped:
                continue
            except Exception:
                self.log.exception("expiring the holds of %s failed", event_id)
                for hold_id in due[event_id]:  # try again shortly
                    heapq.heappush(self.timers, (now + 1.0, event_id, hold_id))
        for event_id in resume:  # activated, its holds get timers of their own (due: now)
            try:
                await self._owner(event_id)
            except (OwnerMoved, NotFound, Fenced):
                continue
            except Exception:
                self.log.exception("activating %s to expire its holds failed", event_id)
                heapq.heappush(self.timers, (now + 1.0, event_id, RESUME))

    def _drop_idle(self) -> None:
        now = time.monotonic()
        idle = self.settings.inventory_idle_seconds
        for event_id in [e for e, o in self.owners.items() if o.idle(now, idle)]:
            self.log.info("inventory of %s leaves memory on %s (idle)", event_id, self.name)
            self._drop(event_id)
        if self.hot_event is None:
            return
        if self.owners or self.activating:
            self.empty_since = None
        elif self.empty_since is None:
            self.empty_since = now
        elif now - self.empty_since >= idle:
            self._end()

    def _end(self) -> None:
        """A hot host with nothing left to own ends its process (the event stays in Postgres)."""
        import ray

        self.log.info("%s ends (idle)", self.name)
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def _fail(done: asyncio.Future[None], exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)
