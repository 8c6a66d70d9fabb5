"""The caller-side batcher: concurrent reservations for one event travel in one call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.batching import ReserveBatcher
from serve.common.errors import Conflict, ServiceUnavailable


class FakeActor:
    """Answers ``reserve_many`` like the inventory actor: (ok, value) per request."""

    def __init__(self, seats: int, fail: BaseException | None = None) -> None:
        self.seats = seats
        self.fail = fail
        self.calls: list[tuple[str, int]] = []

    async def call(self, event_id: str, method: str, *args: Any) -> Any:
        assert method == "reserve_many"
        [requests] = args
        self.calls.append((event_id, len(requests)))
        if self.fail:
            raise self.fail
        answers: list[tuple[bool, Any]] = []
        for user, *_ in requests:
            if self.seats:
                self.seats -= 1
                answers.append((True, {"user": user}))
            else:
                answers.append((False, Conflict("gone", slug="sold-out")))
        return answers


async def test_concurrent_requests_share_one_call_per_event_and_get_their_own_answer() -> None:
    actor = FakeActor(seats=3)
    batcher = ReserveBatcher(actor, window_seconds=0.01)
    results = await asyncio.gather(
        *(batcher.reserve("e1", (f"u{i}", "tt", 1, "full", f"k{i}", "c")) for i in range(5)),
        batcher.reserve("e2", ("v", "tt", 1, "full", "k", "c")),
        return_exceptions=True)
    assert sorted(actor.calls) == [("e1", 5), ("e2", 1)]
    assert [r["user"] for r in results[:3]] == ["u0", "u1", "u2"]  # type: ignore[index]
    assert all(isinstance(r, Conflict) for r in results[3:5])
    assert isinstance(results[5], Conflict)  # the fake has 3 seats in all; e1 went first


async def test_a_failed_call_fails_every_request_of_the_batch() -> None:
    batcher = ReserveBatcher(FakeActor(seats=9, fail=ServiceUnavailable("restarting")), 0.005)
    results = await asyncio.gather(
        *(batcher.reserve("e1", (f"u{i}", "tt", 1, "full", f"k{i}", "c")) for i in range(3)),
        return_exceptions=True)
    assert all(isinstance(r, ServiceUnavailable) for r in results)


async def test_later_requests_start_a_new_batch() -> None:
    actor = FakeActor(seats=9)
    batcher = ReserveBatcher(actor, window_seconds=0.001)
    await batcher.reserve("e1", ("a", "tt", 1, "full", "k1", "c"))
    await batcher.reserve("e1", ("b", "tt", 1, "full", "k2", "c"))
    assert actor.calls == [("e1", 1), ("e1", 1)]
    with pytest.raises(Conflict):
        await ReserveBatcher(FakeActor(seats=0), 0.001).reserve("e9", ("c", "tt", 1, "full",
                                                                        "k", "c"))
