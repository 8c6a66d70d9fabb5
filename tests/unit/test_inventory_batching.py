"""The caller-side batcher: concurrent reservations for one host travel in one call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.batching import ReserveBatcher
from serve.common.errors import Conflict, ServiceUnavailable


class FakeHost:
    """Answers ``send_batch`` like an inventory host: (ok, value) per request, seats per event."""

    def __init__(self, seats: int, fail: BaseException | None = None) -> None:
        self.seats: dict[str, int] = {}
        self.initial = seats
        self.fail = fail
        self.calls: list[tuple[str, list[str]]] = []

    async def send_batch(self, host: str, requests: list[tuple[Any, ...]]) -> list[Any]:
        self.calls.append((host, [r[0] for r in requests]))
        if self.fail:
            raise self.fail
        answers: list[tuple[bool, Any]] = []
        for event_id, user, *_ in requests:
            left = self.seats.setdefault(event_id, self.initial)
            if left:
                self.seats[event_id] = left - 1
                answers.append((True, {"event": event_id, "user": user}))
            else:
                answers.append((False, Conflict("gone", slug="sold-out")))
        return answers


def req(event_id: str, user: str) -> tuple[Any, ...]:
    return (event_id, user, "tt", 1, "full", f"k-{user}", "c")


async def test_requests_for_several_events_of_one_host_share_one_call() -> None:
    host = FakeHost(seats=3)
    batcher = ReserveBatcher(host, window_seconds=0.01)
    results = await asyncio.gather(
        *(batcher.reserve("h0", req("e1", f"u{i}")) for i in range(5)),
        batcher.reserve("h0", req("e2", "v")),
        batcher.reserve("h1", req("e3", "w")),
        return_exceptions=True)
    assert sorted((h, len(events)) for h, events in host.calls) == [("h0", 6), ("h1", 1)]
    assert [r["user"] for r in results[:3]] == ["u0", "u1", "u2"]  # type: ignore[index]
    assert all(isinstance(r, Conflict) for r in results[3:5])
    assert results[5] == {"event": "e2", "user": "v"}  # its own seats: e1 sold out, not e2
    assert results[6] == {"event": "e3", "user": "w"}


async def test_a_failed_call_fails_every_request_of_the_batch() -> None:
    batcher = ReserveBatcher(FakeHost(seats=9, fail=ServiceUnavailable("restarting")), 0.005)
    results = await asyncio.gather(
        *(batcher.reserve("h0", req("e1", f"u{i}")) for i in range(3)),
        return_exceptions=True)
    assert all(isinstance(r, ServiceUnavailable) for r in results)


async def test_later_requests_start_a_new_batch() -> None:
    host = FakeHost(seats=9)
    batcher = ReserveBatcher(host, window_seconds=0.001)
    await batcher.reserve("h0", req("e1", "a"))
    await batcher.reserve("h0", req("e1", "b"))
    assert host.calls == [("h0", ["e1"]), ("h0", ["e1"])]
    with pytest.raises(Conflict):
        await ReserveBatcher(FakeHost(seats=0), 0.001).reserve("h0", req("e9", "c"))


class GatedHost(FakeHost):
    """A host whose calls return only when the test opens the gate."""

    def __init__(self, seats: int) -> None:
        super().__init__(seats)
        self.gate = asyncio.Event()

    async def send_batch(self, host: str, requests: list[tuple[Any, ...]]) -> list[Any]:
        answers = await super().send_batch(host, requests)
        await self.gate.wait()
        return answers


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_requests_arriving_during_a_call_leave_together_when_it_returns() -> None:
    host = GatedHost(seats=9)
    batcher = ReserveBatcher(host, window_seconds=0, in_flight=1)
    first = asyncio.create_task(batcher.reserve("h0", req("e1", "a")))
    await settle()
    assert host.calls == [("h0", ["e1"])]  # sent without waiting for company
    later = [asyncio.create_task(batcher.reserve("h0", req(e, u)))
             for e, u in (("e2", "b"), ("e3", "c"))]
    await settle()
    assert len(host.calls) == 1  # the host's one call slot is busy
    host.gate.set()
    results = await asyncio.gather(first, *later)
    assert host.calls == [("h0", ["e1"]), ("h0", ["e2", "e3"])]
    assert [r["user"] for r in results] == ["a", "b", "c"]


async def test_a_second_call_slot_sends_at_once_and_a_third_request_waits() -> None:
    host = GatedHost(seats=9)
    batcher = ReserveBatcher(host, window_seconds=0, in_flight=2)
    tasks = [asyncio.create_task(batcher.reserve("h0", req("e1", "a")))]
    await settle()
    tasks.append(asyncio.create_task(batcher.reserve("h0", req("e2", "b"))))
    await settle()
    tasks += [asyncio.create_task(batcher.reserve("h0", req(e, u)))
              for e, u in (("e3", "c"), ("e4", "d"))]
    await settle()
    assert host.calls == [("h0", ["e1"]), ("h0", ["e2"])]
    host.gate.set()
    await asyncio.gather(*tasks)
    assert host.calls[2:] == [("h0", ["e3", "e4"])]
    assert batcher._busy == {} and batcher._queues == {}  # nothing left behind


def test_a_batcher_needs_a_call_slot() -> None:
    with pytest.raises(ValueError, match="in_flight"):
        ReserveBatcher(FakeHost(seats=1), in_flight=0)
