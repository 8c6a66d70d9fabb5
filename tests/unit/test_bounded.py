"""Every in-memory map fed by requests stays within its bound, and what leaves it is
answered again correctly (the owners' idempotency keys: tests/integration/test_inventory_hosts.py
checks that a forgotten key is answered from Postgres)."""

from __future__ import annotations

import pytest

from serve.common.bounded import BoundedDict
from serve.gateway.ratelimit import MemoryLimiter
from serve.notifications.domain import CHATS_KEPT, LimiterState, Limits
from serve.users.throttle import MemoryCounters


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_least_recently_used_entry_leaves_past_the_size() -> None:
    kept: BoundedDict[str, int] = BoundedDict(3)
    for i, key in enumerate("abc"):
        kept[key] = i
    assert kept.get("a") == 0  # a is now the most recently used
    kept["d"] = 3
    assert "b" not in kept and len(kept) == 3 and kept.evicted == 1
    assert [k for k in kept] == ["c", "a", "d"]
    kept["c"] = 9  # writing an existing key refreshes it and evicts nothing
    assert kept.evicted == 1 and kept["c"] == 9
    for i in range(1000):
        kept[f"k{i}"] = i
    assert len(kept) == 3 and kept.evicted == 1001


def test_an_entry_past_its_expiry_is_gone() -> None:
    clock = Clock()
    kept: BoundedDict[str, str] = BoundedDict(10, clock=clock)
    kept.set("token", "identity", expires_at=5)
    kept.set("forever", "x")
    clock.now = 4.9
    assert kept.get("token") == "identity"
    clock.now = 5
    assert kept.get("token") is None and "token" not in kept and len(kept) == 1
    with pytest.raises(KeyError):
        kept["token"]
    assert kept.get("forever") == "x"
    assert kept.pop("forever") == "x" and kept.pop("forever", "gone") == "gone"


def test_a_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        BoundedDict(0)


async def test_the_in_process_rate_limiter_keeps_at_most_its_clients() -> None:
    limiter = MemoryLimiter(max_clients=100)
    for i in range(5000):
        assert (await limiter.hit(f"ip-{i}", 10)).allowed
    assert len(limiter._tat) == 100
    # A client still tracked keeps its budget: the most recent one is refused past its burst.
    decisions = [await limiter.hit("ip-4999", 10) for _ in range(10)]
    assert not decisions[-1].allowed


def test_login_counters_keep_at_most_their_keys_and_forget_ended_windows() -> None:
    counters = MemoryCounters(max_keys=50)
    for i in range(500):
        counters.increment(f"ip:{i}", 900)
    assert len(counters._counts) == 50
    assert counters.read("ip:499")[0] == 1 and counters.read("ip:0") == (0, 0.0)


def test_the_telegram_limiter_forgets_chats_that_no_longer_limit_a_send() -> None:
    state = LimiterState(Limits(per_second=1_000_000, guard_ms=0))
    now = 0
    for chat in range(3 * CHATS_KEPT):
        now += 1
        assert state.acquire(now, chat)[1] == ""
    assert len(state.last_chat_ms) <= CHATS_KEPT + 1
    assert state.acquire(now, 3 * CHATS_KEPT - 1)[1] == "chat"  # the recent chat still waits
    group = -1001
    assert state.acquire(now, group)[1] == ""
    state.forget_idle_chats(now + 2_000)
    assert group in state.group_sends  # its minute is not over: 20 a minute still counts
    state.forget_idle_chats(now + 61_000)
    assert state.group_sends == {} and state.last_chat_ms == {}
