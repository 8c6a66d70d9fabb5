"""The sender's group commit and the limiter's wait (in-process): writes batched, no second over
its budget."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from serve.notifications.domain import Limits
from serve.notifications.grouped import GroupWriter
from serve.notifications.limiter import LocalLimiter, wait_for_slot


async def test_submits_within_the_window_are_one_write() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        return [i * 10 for i in items]

    group: GroupWriter[int, int] = GroupWriter(write, window_seconds=0.01)
    assert await asyncio.gather(*(group.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert writes == [[0, 1, 2, 3, 4]]
    assert await group.submit(7) == 70
    assert writes[-1] == [7]


async def test_a_failed_write_fails_each_of_its_submitters() -> None:
    async def write(items: list[int]) -> list[int]:
        raise RuntimeError("database gone")

    group: GroupWriter[int, int] = GroupWriter(write, window_seconds=0.001)
    results = await asyncio.gather(*(group.submit(i) for i in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_full_group_is_written_without_waiting_for_the_window() -> None:
    async def write(items: list[int]) -> list[int]:
        return items

    group: GroupWriter[int, int] = GroupWriter(write, window_seconds=30, max_items=3)
    started = time.monotonic()
    assert await asyncio.wait_for(asyncio.gather(*(group.submit(i) for i in range(3))), 5)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("per_second", [5, 20])
async def test_waiting_for_slots_never_exceeds_a_wall_clock_second(per_second: int) -> None:
    limiter = LocalLimiter(Limits(per_second=per_second, guard_ms=100))
    sent: list[float] = []
    marked: list[int] = []

    async def send(chat: int) -> None:
        async def mark() -> None:
            marked.append(chat)

        await wait_for_slot(limiter, chat, meanwhile=mark)
        sent.append(time.time())

    await asyncio.gather(*(send(1000 + i) for i in range(per_second * 2 + 3)))
    per_wall_second = Counter(int(t) for t in sent)
    assert max(per_wall_second.values()) <= per_second, per_wall_second
    assert sorted(marked) == sorted(1000 + i for i in range(per_second * 2 + 3))
