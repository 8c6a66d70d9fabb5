"""The one retry policy: exponential backoff, capped; and a loop that applies it.

Standard library only (a kernel module): the outbox relay, the consumers, the AMQP redelivery
and the sandbox webhook sender all wait ``backoff(n, base, cap)`` after their n-th failure,
whether they count failures in memory, in the broker or in a table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def backoff(attempt: int, base: float, cap: float = 5.0) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, ...): ``base``, doubling, capped."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


async def retry(operation: Callable[[], Awaitable[T]], *, attempts: int | None, base: float,
                cap: float = 5.0,
                on_failure: Callable[[int, Exception], object] | None = None) -> T:
    """Await ``operation()`` until it succeeds, waiting ``backoff`` between attempts.

    ``on_failure(attempt, exc)`` is called after each failure. After ``attempts`` failures the
    last exception is raised (``None``: no limit).
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await operation()
        except Exception as exc:
            if on_failure is not None:
                on_failure(attempt, exc)
            if attempts is not None and attempt >= attempts:
                raise
            await asyncio.sleep(backoff(attempt, base, cap))
