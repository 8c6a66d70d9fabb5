"""Group commit: items submitted within a short window are written by one call.

Each submitter awaits its own item's write, so it knows the item is committed; a burst of
submitters costs one transaction instead of one each. Writes run one at a time, in the order
their windows closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupWriter(Generic[T, R]):
    def __init__(self, write: Callable[[list[T]], Awaitable[list[R]]], *,
                 window_seconds: float = 0.005, max_items: int = 500) -> None:
        self.write = write
        self.window = window_seconds
        self.max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._full = asyncio.Event()
        self._flushing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_items:
            self._full.set()
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), self.window)
        async with self._lock:
            batch, self._pending = self._pending, []
            self._full.clear()
            self._flushing = None
            if not batch:
                return
            try:
                results = await self.write([item for item, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
