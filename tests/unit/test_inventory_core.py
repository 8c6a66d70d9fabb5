"""The inventory core: table-driven decisions and hypothesis properties of SPEC's invariants."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from serve.common.errors import Conflict
from serve.events.inventory import Hold, Inventory


def inventory(quantity: int = 3, limit: int | None = None) -> Inventory:
    inv = Inventory()
    inv.set_ticket_type("tt", quantity, limit)
    return inv


def test_holds_take_seats_until_sold_out() -> None:
    inv = inventory(3)
    inv.hold(Hold("h1", "tt", "u1", 2, 10.0))
    assert inv.available("tt") == 1
    with pytest.raises(Conflict) as err:
        inv.hold(Hold("h2", "tt", "u2", 2, 10.0))
    assert err.value.slug == "sold-out"
    assert inv.available("tt") == 1 and "h2" not in inv.holds


def test_per_user_limit_counts_holds_and_confirmed_seats() -> None:
    inv = inventory(10, limit=2)
    inv.take_confirmed("tt", "u1", 1)
    inv.hold(Hold("h1", "tt", "u1", 1, 10.0))
    with pytest.raises(Conflict) as err:
        inv.hold(Hold("h2", "tt", "u1", 1, 10.0))
    assert err.value.slug == "limit-exceeded"
    inv.hold(Hold("h3", "tt", "u2", 2, 10.0))
    inv.release("h1")
    inv.hold(Hold("h4", "tt", "u1", 1, 10.0))


def test_release_returns_seats_exactly_once_and_confirm_ends_a_hold() -> None:
    inv = inventory(2)
    inv.hold(Hold("h1", "tt", "u1", 2, 10.0))
    assert inv.release("h1") is not None
    assert inv.release("h1") is None
    assert inv.available("tt") == 2
    inv.hold(Hold("h2", "tt", "u1", 1, 10.0))
    assert inv.confirm("h2") is not None
    assert inv.release("h2") is None and inv.confirm("h2") is None
    assert inv.counts()["tt"] == {"quantity": 2, "confirmed": 1, "held": 0, "available": 1}


def test_due_lists_only_holds_whose_time_is_up() -> None:
    inv = inventory(5)
    inv.hold(Hold("early", "tt", "u1", 1, 5.0))
    inv.hold(Hold("late", "tt", "u2", 1, 50.0))
    assert [h.id for h in inv.due(10.0)] == ["early"]
    assert inv.next_expiry() == 5.0


def test_confirmed_seats_return_when_cancelled() -> None:
    inv = inventory(1)
    inv.take_confirmed("tt", "u1", 1)
    with pytest.raises(Conflict):
        inv.take_confirmed("tt", "u2", 1)
    inv.release_confirmed("tt", "u1", 1)
    inv.take_confirmed("tt", "u2", 1)
    with pytest.raises(ValueError):
        inv.release_confirmed("tt", "u1", 5)


class InventoryMachine(RuleBasedStateMachine):
    """Any interleaving of reserve / confirm / expire / cancel keeps SPEC's invariants."""

    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.inv = Inventory()
        self.quantity = {"a": 5, "b": 2}
        for tt, q in self.quantity.items():
            self.inv.set_ticket_type(tt, q, 3)
        self.clock = 0.0
        self.n = 0
        self.ended: set[str] = set()
        self.confirmed: list[tuple[str, str, int]] = []

    @rule(target=holds, tt=st.sampled_from(["a", "b"]), user=st.sampled_from(["u1", "u2", "u3"]),
          qty=st.integers(1, 3), ttl=st.floats(0.5, 5))
    def reserve(self, tt: str, user: str, qty: int, ttl: float) -> str:
        self.n += 1
        hold_id = f"h{self.n}"
        before = self.inv.available(tt)
        try:
            self.inv.hold(Hold(hold_id, tt, user, qty, self.clock + ttl))
        except Conflict:
            assert self.inv.available(tt) == before
        return hold_id

    @rule(hold_id=holds)
    def confirm(self, hold_id: str) -> None:
        hold = self.inv.confirm(hold_id)
        if hold is not None:
            assert hold_id not in self.ended
            self.ended.add(hold_id)
            self.confirmed.append((hold.ticket_type_id, hold.user_id, hold.quantity))

    @rule(dt=st.floats(0.1, 3))
    def expire(self, dt: float) -> None:
        self.clock += dt
        for hold in self.inv.due(self.clock):
            assert self.inv.release(hold.id) is not None
            assert hold.id not in self.ended
            self.ended.add(hold.id)
        assert not self.inv.due(self.clock)

    @rule(hold_id=holds)
    def cancel_hold(self, hold_id: str) -> None:
        if self.inv.release(hold_id) is not None:
            assert hold_id not in self.ended
            self.ended.add(hold_id)

    @rule()
    def cancel_confirmed(self) -> None:
        if self.confirmed:
            self.inv.release_confirmed(*self.confirmed.pop())

    @invariant()
    def never_oversold(self) -> None:
        for tt, q in self.quantity.items():
            stock = self.inv.stock[tt]
            assert stock.confirmed >= 0 and stock.held >= 0
            assert stock.confirmed + stock.held <= q
            assert self.inv.available(tt) == q - stock.confirmed - stock.held
            assert stock.held == sum(h.quantity for h in self.inv.holds.values()
                                     if h.ticket_type_id == tt)
            assert stock.confirmed == sum(c[2] for c in self.confirmed if c[0] == tt)

    @invariant()
    def per_user_counts_match_and_respect_the_limit(self) -> None:
        for (tt, user), n in self.inv.per_user.items():
            held = sum(h.quantity for h in self.inv.holds.values()
                       if (h.ticket_type_id, h.user_id) == (tt, user))
            confirmed = sum(c[2] for c in self.confirmed if (c[0], c[1]) == (tt, user))
            assert n == held + confirmed <= 3


TestInventoryMachine = InventoryMachine.TestCase
TestInventoryMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
