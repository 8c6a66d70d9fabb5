"""Caller-side micro-batching of reservations: the requests for one event that arrive within
a short window travel to its actor in one call (``reserve_many``), which saves the per-call
cost of Ray on the hot path. Every batched request carries an idempotency key, so a batch is
safe to resend when the actor restarts mid-call.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

Request = tuple[Any, ...]  # the positional arguments of InventoryActor.reserve


class Caller(Protocol):
    async def call(self, event_id: str, method: str, *args: Any) -> Any: ...


class ReserveBatcher:
    def __init__(self, caller: Caller, window_seconds: float) -> None:
        self.caller = caller
        self.window = window_seconds
        self._queues: dict[str, list[tuple[Request, asyncio.Future[Any]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def reserve(self, event_id: str, request: Request) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        queue = self._queues.setdefault(event_id, [])
        queue.append((request, future))
        if len(queue) == 1:
            task = loop.create_task(self._send(event_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _send(self, event_id: str) -> None:
        await asyncio.sleep(self.window)
        batch = self._queues.pop(event_id, [])
        try:
            results = await self.caller.call(event_id, "reserve_many", [r for r, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
