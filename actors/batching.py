"""Caller-side batching of reservations: the requests for the events of one inventory host
travel to it together (``reserve_batch``), which saves Ray's per-call cost on the hot path.

A host gets at most ``in_flight`` calls at once from one caller. A request that finds a call
slot free leaves at once (after ``window_seconds``, 0 by default: only what arrived in the same
turn of the event loop joins it); one that finds them all busy waits for the first to return
and leaves with everything that queued meanwhile. So a quiet sale pays no waiting, and a busy
one batches as much as arrives during a call. Every batched request carries an idempotency
key, so a batch is safe to resend when the host restarts mid-call.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

Request = tuple[Any, ...]  # event id, then the positional arguments of EventOwner.reserve
Waiting = tuple[Request, asyncio.Future[Any]]


class Sender(Protocol):
    async def send_batch(self, host: str, requests: list[Request]) -> list[tuple[bool, Any]]: ...


class ReserveBatcher:
    def __init__(self, sender: Sender, window_seconds: float = 0.0, in_flight: int = 1) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self.sender = sender
        self.window = window_seconds
        self.in_flight = in_flight
        self._queues: dict[str, list[Waiting]] = {}
        self._busy: dict[str, int] = {}  # calls (and calls about to leave) per host
        self._tasks: set[asyncio.Task[None]] = set()

    async def reserve(self, host: str, request: Request) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(host, [])
        queue.append((request, future))
        if len(queue) == 1 and self._busy.get(host, 0) < self.in_flight:
            self._start(host)
        return await future

    def _start(self, host: str) -> None:
        self._busy[host] = self._busy.get(host, 0) + 1
        task = asyncio.get_running_loop().create_task(self._send(host))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, host: str) -> None:
        try:
            await asyncio.sleep(self.window)  # 0: one turn, so requests of this turn join
            batch = self._queues.pop(host, [])
            if batch:
                await self._deliver(host, batch)
        finally:
            self._busy[host] -= 1
            if self._queues.get(host):  # arrived while every slot was busy
                self._start(host)
            elif not self._busy[host]:
                del self._busy[host]

    async def _deliver(self, host: str, batch: list[Waiting]) -> None:
        try:
            results = await self.sender.send_batch(host, [r for r, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
