"""Calling an event's inventory actor: find or create it by name, retry while it (re)starts."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.batching import ReserveBatcher
from cluster.settings import Settings
from serve.common.errors import ProblemError, ServiceUnavailable

ATTEMPTS = 6


class InventoryClient:
    """Used by the gateway (hot path: one hop) and the event service; caches actor handles."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.settings = Settings.from_runtime(config)
        self._handles: dict[str, Any] = {}
        self._creating: dict[str, asyncio.Future[Any]] = {}
        window = self.settings.inventory_client_batch_ms / 1000
        self._batcher = ReserveBatcher(self, window) if window > 0 else None

    async def reserve(self, event_id: str, user_id: str, ticket_type_id: str, quantity: int,
                      payment_mode: str, idempotency_key: str, correlation_id: str) -> Any:
        """Reserve seats (the hot path); batched with concurrent requests for the event."""
        request = (user_id, ticket_type_id, quantity, payment_mode, idempotency_key,
                   correlation_id)
        if self._batcher is None:
            return await self.call(event_id, "reserve", *request)
        return await self._batcher.reserve(event_id, request)

    def handle(self, event_id: str) -> Any:
        """The actor's handle, found or created here (blocks on the GCS: not for event loops)."""
        handle = self._handles.get(event_id)
        if handle is None:
            handle = self._handles[event_id] = self._create(event_id)
        return handle

    async def ahandle(self, event_id: str) -> Any:
        """The actor's handle without blocking the event loop: finding or creating a named
        actor is a synchronous round trip to the GCS, slow while many actors start, so it runs
        in a thread, once per event however many requests wait for it."""
        handle = self._handles.get(event_id)
        if handle is not None:
            return handle
        creating = self._creating.get(event_id)
        if creating is None:
            creating = asyncio.ensure_future(asyncio.to_thread(self._create, event_id))
            self._creating[event_id] = creating
            creating.add_done_callback(lambda _: self._creating.pop(event_id, None))
        handle = await asyncio.shield(creating)
        self._handles.setdefault(event_id, handle)
        return handle

    def _create(self, event_id: str) -> Any:
        import ray

        from actors.inventory import NAMESPACE, InventoryActor, actor_name

        remote = ray.remote(InventoryActor)
        return remote.options(
            name=actor_name(event_id), namespace=NAMESPACE, get_if_exists=True,
            lifetime="detached", num_cpus=self.settings.inventory_num_cpus,
            max_restarts=-1, max_task_retries=0, max_concurrency=2000,
        ).remote(self.config, event_id)

    async def call(self, event_id: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` on the event's actor. Ray errors become 503 after a few retries;
        a method that creates something must be idempotent (reserve takes a key)."""
        from ray.exceptions import RayActorError, RayTaskError

        from actors.inventory import ActorClosing

        delay = 0.05
        for _ in range(ATTEMPTS):
            try:
                handle = await self.ahandle(event_id)
                return await getattr(handle, method).remote(*args, **kwargs)
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, ActorClosing):
                    self._handles.pop(event_id, None)
                elif isinstance(cause, ProblemError):
                    raise cause from None
                else:
                    raise
            except RayActorError:
                self._handles.pop(event_id, None)
            await asyncio.sleep(delay)
            delay *= 2
        raise ServiceUnavailable("the event's inventory is restarting; retry")

    async def call_if_active(self, event_id: str, method: str, *args: Any) -> Any:
        """Call the event's actor only if it is running (``None`` otherwise): changes to an
        event reach a live actor at once, and an inactive one reads them when it starts."""
        import ray

        from actors.inventory import NAMESPACE, actor_name

        try:
            found = await asyncio.to_thread(ray.get_actor, actor_name(event_id),
                                            namespace=NAMESPACE)
            self._handles.setdefault(event_id, found)
        except ValueError:
            self._handles.pop(event_id, None)
            return None
        try:
            return await self.call(event_id, method, *args)
        except ProblemError:
            return None

    def forget(self, event_id: str) -> None:
        self._handles.pop(event_id, None)
