"""An in-memory map that cannot grow with its input: past ``maxsize`` entries the least
recently used one leaves, and an entry may carry its own expiry (it is gone once past it).

Every cache and memo a replica or an actor keeps of what requests bring (event ids, tokens,
idempotency keys, client addresses) is one of these, so no stream of distinct inputs can take
its memory. What leaves must be safe to forget: it is looked up again, or asked of Postgres.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class BoundedDict(Generic[K, V]):
    def __init__(self, maxsize: int, clock: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 1:
            raise ValueError("a bounded map holds at least one entry")
        self.maxsize = maxsize
        self.clock = clock
        self.evicted = 0  # entries that left for room (not those that expired or were popped)
        self._items: OrderedDict[K, tuple[V, float | None]] = OrderedDict()

    def set(self, key: K, value: V, expires_at: float | None = None) -> None:
        """Keep ``value`` (until ``expires_at`` on ``clock``, if given) as the newest entry."""
        self._items[key] = (value, expires_at)
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
            self.evicted += 1

    def __setitem__(self, key: K, value: V) -> None:
        self.set(key, value)

    def _live(self, key: K) -> tuple[V, float | None] | None:
        item = self._items.get(key)
        if item is not None and item[1] is not None and item[1] <= self.clock():
            del self._items[key]
            return None
        return item

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: object = None) -> object:
        """The live value of ``key`` (which becomes the most recently used), else ``default``."""
        item = self._live(key)
        if item is None:
            return default
        self._items.move_to_end(key)
        return item[0]

    def __getitem__(self, key: K) -> V:
        item = self._live(key)
        if item is None:
            raise KeyError(key)
        self._items.move_to_end(key)
        return item[0]

    def __contains__(self, key: object) -> bool:
        return key in self._items and self._live(key) is not None  # type: ignore[arg-type]

    def pop(self, key: K, default: V | None = None) -> V | None:
        item = self._items.pop(key, None)
        return default if item is None else item[0]

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))
