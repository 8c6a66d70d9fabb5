"""Calling the inventory of an event: route to its host, find or create the host, retry.

An event's inventory lives on the shared host of its shard, or on a host of its own once the
event is declared hot (``actors.shards``). Callers (the gateway's hot path, the event service)
learn that an event moved when its old host refuses it (``OwnerMoved``) and route again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors import shards
from actors.batching import ReserveBatcher
from cluster.settings import Settings
from serve.common.bounded import BoundedDict
from serve.common.errors import ProblemError, ServiceUnavailable

ATTEMPTS = 8


class InventoryClient:
    """Used by the gateway (hot path: one hop) and the event service; caches host handles."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.settings = Settings.from_runtime(config)
        size = self.settings.memory_cache_entries
        self._handles: BoundedDict[str, Any] = BoundedDict(size)
        self._creating: dict[str, asyncio.Future[Any]] = {}
        # Events this client has seen on hosts of their own (a forgotten one is routed to its
        # shared host, which refuses it as moved, and is learned again).
        self._hot: BoundedDict[str, bool] = BoundedDict(size)
        try:
            url = self.settings.database_url_for("event")
        except LookupError:  # no database yet: the hosts will refuse to start anyway
            url = ""
        self.namespace = shards.namespace_of(url)
        self._batcher = ReserveBatcher(self, self.settings.inventory_client_batch_ms / 1000,
                                       self.settings.inventory_client_calls_in_flight)

    # --- routing ---
    def host_of(self, event_id: str) -> str:
        if event_id in self._hot:
            return shards.hot_host_name(event_id)
        return shards.host_name(shards.host_index(event_id, self.settings.inventory_hosts))

    def _moved(self, event_id: str, host: str) -> None:
        """``host`` refused the event as not its kind: it is hot now, or no longer is."""
        if host == shards.hot_host_name(event_id):
            self._hot.discard(event_id)
        else:
            self._hot[event_id] = True

    async def ahandle(self, host: str) -> Any:
        """The host's handle without blocking the event loop: finding or creating a named
        actor is a synchronous round trip to the GCS, so it runs in a thread, once per host."""
        handle = self._handles.get(host)
        if handle is not None:
            return handle
        creating = self._creating.get(host)
        if creating is None:
            creating = asyncio.ensure_future(asyncio.to_thread(self._create, host))
            self._creating[host] = creating
            creating.add_done_callback(lambda _: self._creating.pop(host, None))
        handle = await asyncio.shield(creating)
        return self._keep(host, handle)

    def _keep(self, host: str, handle: Any) -> Any:
        """The handle kept for ``host``: one found meanwhile wins over ``handle``."""
        kept = self._handles.get(host)
        if kept is None:
            self._handles[host] = kept = handle
        return kept

    def _create(self, host: str) -> Any:
        import ray

        from actors.host import InventoryHost

        if host.startswith(shards.hot_host_name("")):
            args: dict[str, Any] = {"hot_event": host[len(shards.hot_host_name("")):]}
        else:
            args = {"index": int(host.rsplit("-", 1)[1])}
        handle: Any = ray.remote(InventoryHost).options(
            name=host, namespace=self.namespace, get_if_exists=True,
            lifetime="detached", num_cpus=self.settings.inventory_num_cpus,
            max_restarts=-1, max_task_retries=0, max_concurrency=10_000,
            # As for Serve's own actors: no task events (status records sent to the GCS for
            # the dashboard and ``ray list tasks``) for each of the hot path's calls.
            enable_task_events=False,
            scheduling_strategy="SPREAD" if self.settings.inventory_spread else "DEFAULT",
        ).remote(self.config, **args)
        ray.get(handle.configure.remote(self.config))  # a host created earlier adopts ours
        return handle

    def start_hosts(self) -> None:
        """Create the shared hosts now (blocking: from a thread), so no sale waits for one."""
        for index in range(self.settings.inventory_hosts):
            host = shards.host_name(index)
            if host not in self._handles:
                self._keep(host, self._create(host))

    # --- calls ---
    async def reserve(self, event_id: str, user_id: str, ticket_type_id: str, quantity: int,
                      payment_mode: str, idempotency_key: str, correlation_id: str) -> Any:
        """Reserve seats (the hot path); batched with concurrent requests for the same host."""
        args = (user_id, ticket_type_id, quantity, payment_mode, idempotency_key,
                correlation_id)
        host = self.host_of(event_id)
        try:
            return await self._batcher.reserve(host, (event_id, *args))
        except ProblemError as exc:
            if not isinstance(exc, ServiceUnavailable):
                raise
            self._after_refusal(exc, event_id, host)
        except Exception as exc:
            if not _actor_gone(exc):
                raise
            self._handles.pop(host, None)
        return await self.call(event_id, "reserve", *args)

    async def send_batch(self, host: str, requests: list[tuple[Any, ...]]) -> list[Any]:
        from ray.exceptions import RayTaskError

        handle = await self.ahandle(host)
        try:
            results: list[Any] = await handle.reserve_batch.remote(requests)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ProblemError):
                raise cause from None
            raise
        return results

    async def call(self, event_id: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the event's owner. Ray errors become 503 after a few retries;
        a method that creates something must be idempotent (reserve takes a key)."""
        from ray.exceptions import RayTaskError

        delay = 0.05
        for _ in range(ATTEMPTS):
            host = self.host_of(event_id)
            try:
                handle = await self.ahandle(host)
                return await handle.call.remote(event_id, method, args, kwargs)
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if not isinstance(cause, ProblemError):
                    raise
                if not isinstance(cause, ServiceUnavailable) or cause.slug == "overloaded":
                    raise cause from None
                if self._after_refusal(cause, event_id, host):
                    continue  # routed elsewhere: no need to wait
            except Exception as exc:
                if not _actor_gone(exc):
                    raise
                self._handles.pop(host, None)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        raise ServiceUnavailable("the event's inventory is restarting; retry")

    def _after_refusal(self, exc: ProblemError, event_id: str, host: str) -> bool:
        """A host refused: route again. True when the event moved (retry at once)."""
        from actors.owner import OwnerMoved

        if isinstance(exc, OwnerMoved):
            self._moved(event_id, host)
            return True
        self._handles.pop(host, None)
        return False

    async def call_if_active(self, event_id: str, method: str, *args: Any) -> Any:
        """Call the event's owner only if it is in memory (``None`` otherwise): changes to an
        event reach a live owner at once, and an inactive one reads them when it activates."""
        host = self.host_of(event_id)
        handle = await self._existing(host)
        if handle is None:
            return None
        try:
            return await handle.call_if_active.remote(event_id, method, args)
        except Exception as exc:
            if _actor_gone(exc):
                self._handles.pop(host, None)
                return None
            raise

    async def _existing(self, host: str) -> Any:
        """The host's handle if it runs (``None`` otherwise); never starts one."""
        import ray

        handle = self._handles.get(host)
        if handle is None:
            try:
                handle = await asyncio.to_thread(ray.get_actor, host,
                                                 namespace=self.namespace)
            except ValueError:
                return None
        return handle

    async def declare_hot(self, event_id: str, hot: bool) -> dict[str, Any]:
        """After the event's ``hot`` flag changed in Postgres: move its owner now. The old host
        forgets it, and the new one activates it (a hot event's host process starts here,
        ahead of the sale). Returns the owner's counts and where it lives."""
        old = self.host_of(event_id)
        if hot:
            self._hot[event_id] = True
        else:
            self._hot.discard(event_id)
        if old != self.host_of(event_id):
            handle = await self._existing(old)
            try:
                if handle is not None:
                    await handle.drop.remote(event_id)
            except Exception as exc:
                if not _actor_gone(exc):
                    raise
        counts: dict[str, Any] = await self.call(event_id, "ready")
        return counts | {"host": self.host_of(event_id)}

    async def host_stats(self, event_id: str) -> dict[str, Any]:
        handle = await self.ahandle(self.host_of(event_id))
        stats: dict[str, Any] = await handle.stats.remote()
        return stats

    def forget(self, event_id: str) -> None:
        self._hot.discard(event_id)


def _actor_gone(exc: BaseException) -> bool:
    from ray.exceptions import RayActorError

    return isinstance(exc, RayActorError)
