"""Caller-side micro-batching of reservations: the requests for the events of one inventory
host that arrive within a short window travel to it in one call (``reserve_batch``), which saves
Ray's per-call cost on the hot path. Every batched request carries an idempotency key, so a
batch is safe to resend when the host restarts mid-call.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

Request = tuple[Any, ...]  # event id, then the positional arguments of EventOwner.reserve


class Sender(Protocol):
    async def send_batch(self, host: str, requests: list[Request]) -> list[tuple[bool, Any]]: ...


class ReserveBatcher:
    def __init__(self, sender: Sender, window_seconds: float) -> None:
        self.sender = sender
        self.window = window_seconds
        self._queues: dict[str, list[tuple[Request, asyncio.Future[Any]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def reserve(self, host: str, request: Request) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        queue = self._queues.setdefault(host, [])
        queue.append((request, future))
        if len(queue) == 1:
            task = loop.create_task(self._send(host))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _send(self, host: str) -> None:
        await asyncio.sleep(self.window)
        batch = self._queues.pop(host, [])
        try:
            results = await self.sender.send_batch(host, [r for r, _ in batch])
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
