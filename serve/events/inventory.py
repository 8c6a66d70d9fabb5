"""The inventory core of one event: availability per ticket type, holds, confirmations.

Pure and synchronous (standard library only): every decision is a single method call, so the
actor that owns an instance can never interleave two decisions. Invariants (SPEC):

1. confirmed + held <= quantity for every ticket type; availability is never negative.
2. A hold ends exactly once (confirmed, released); its seats return exactly once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from serve.common.errors import Conflict


@dataclass(frozen=True, slots=True)
class Hold:
    id: str
    ticket_type_id: str
    user_id: str
    quantity: int
    expires_at: float  # epoch seconds


@dataclass(slots=True)
class TicketStock:
    quantity: int
    per_user_limit: int | None = None
    confirmed: int = 0
    held: int = 0

    @property
    def available(self) -> int:
        return self.quantity - self.confirmed - self.held


class Inventory:
    def __init__(self) -> None:
        self.stock: dict[str, TicketStock] = {}
        self.holds: dict[str, Hold] = {}
        self.per_user: dict[tuple[str, str], int] = defaultdict(int)

    # --- catalogue ---
    def set_ticket_type(self, ticket_type_id: str, quantity: int,
                        per_user_limit: int | None) -> None:
        stock = self.stock.get(ticket_type_id)
        if stock is None:
            self.stock[ticket_type_id] = TicketStock(quantity, per_user_limit)
        else:
            stock.quantity, stock.per_user_limit = quantity, per_user_limit

    def available(self, ticket_type_id: str) -> int:
        return max(self._stock(ticket_type_id).available, 0)

    # --- decisions ---
    def check(self, ticket_type_id: str, user_id: str, quantity: int) -> None:
        """Raise 409 ``sold-out`` or ``limit-exceeded`` unless the seats can be taken now."""
        stock = self._stock(ticket_type_id)
        if quantity < 1:
            raise Conflict("quantity must be at least 1", slug="bad-quantity")
        limit = stock.per_user_limit
        if limit is not None and self.per_user[(ticket_type_id, user_id)] + quantity > limit:
            raise Conflict(f"at most {limit} ticket(s) of this type per person",
                           slug="limit-exceeded", per_user_limit=limit)
        if stock.available < quantity:
            raise Conflict("no tickets of this type are left", slug="sold-out",
                           available=max(stock.available, 0))

    def hold(self, hold: Hold) -> Hold:
        """Check and take seats as a hold that expires, in one step."""
        if hold.id in self.holds:
            raise ValueError(f"hold {hold.id} exists")
        self.check(hold.ticket_type_id, hold.user_id, hold.quantity)
        self.holds[hold.id] = hold
        self._stock(hold.ticket_type_id).held += hold.quantity
        self.per_user[(hold.ticket_type_id, hold.user_id)] += hold.quantity
        return hold

    def restore_hold(self, hold: Hold) -> None:
        """Count a hold already persisted (rebuilding from the database): no check."""
        self.holds[hold.id] = hold
        self._stock(hold.ticket_type_id).held += hold.quantity
        self.per_user[(hold.ticket_type_id, hold.user_id)] += hold.quantity

    def take_confirmed(self, ticket_type_id: str, user_id: str, quantity: int) -> None:
        """Check and take seats as confirmed at once (free tickets, late payments)."""
        self.check(ticket_type_id, user_id, quantity)
        self.add_confirmed(ticket_type_id, user_id, quantity)

    def add_confirmed(self, ticket_type_id: str, user_id: str, quantity: int) -> None:
        """Count seats already confirmed (rebuilding from the database)."""
        self._stock(ticket_type_id).confirmed += quantity
        self.per_user[(ticket_type_id, user_id)] += quantity

    def confirm(self, hold_id: str) -> Hold | None:
        """Turn a hold into confirmed seats; ``None`` when it is not held (any more)."""
        hold = self.holds.pop(hold_id, None)
        if hold is None:
            return None
        stock = self._stock(hold.ticket_type_id)
        stock.held -= hold.quantity
        stock.confirmed += hold.quantity
        return hold

    def release(self, hold_id: str) -> Hold | None:
        """Return a hold's seats; exactly once (``None`` the second time)."""
        hold = self.holds.pop(hold_id, None)
        if hold is None:
            return None
        self._stock(hold.ticket_type_id).held -= hold.quantity
        self._forget_user(hold.ticket_type_id, hold.user_id, hold.quantity)
        return hold

    def release_confirmed(self, ticket_type_id: str, user_id: str, quantity: int) -> None:
        """Return confirmed seats (a cancelled or refunded registration)."""
        stock = self._stock(ticket_type_id)
        if stock.confirmed < quantity:
            raise ValueError("more seats released than were confirmed")
        stock.confirmed -= quantity
        self._forget_user(ticket_type_id, user_id, quantity)

    def due(self, now: float) -> list[Hold]:
        """Holds whose time is up (not yet released)."""
        return [h for h in self.holds.values() if h.expires_at <= now]

    def next_expiry(self) -> float | None:
        return min((h.expires_at for h in self.holds.values()), default=None)

    def counts(self) -> dict[str, dict[str, int]]:
        return {tt: {"quantity": s.quantity, "confirmed": s.confirmed, "held": s.held,
                     "available": max(s.available, 0)} for tt, s in self.stock.items()}

    def _stock(self, ticket_type_id: str) -> TicketStock:
        stock = self.stock.get(ticket_type_id)
        if stock is None:
            raise KeyError(ticket_type_id)
        return stock

    def _forget_user(self, ticket_type_id: str, user_id: str, quantity: int) -> None:
        key = (ticket_type_id, user_id)
        self.per_user[key] -= quantity
        if self.per_user[key] <= 0:
            del self.per_user[key]
