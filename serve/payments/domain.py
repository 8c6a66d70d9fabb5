"""Payment rules: the state machine, what a payment of each kind is for, refund arithmetic.

Standard library only. Amounts are integer minor units of one currency.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from serve.common.errors import Conflict, Unprocessable


class Status(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class Kind(StrEnum):
    FULL = "full"
    PREPAYMENT = "prepayment"
    REMAINDER = "remainder"


# SPEC: Pending -> Processing -> Completed | Failed; Completed -> Refunded | PartiallyRefunded;
# PartiallyRefunded -> PartiallyRefunded | Refunded. A provider may report the outcome of a
# pending payment directly, so Pending -> Completed | Failed is allowed too.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PROCESSING, Status.COMPLETED, Status.FAILED}),
    Status.PROCESSING: frozenset({Status.COMPLETED, Status.FAILED}),
    Status.COMPLETED: frozenset({Status.PARTIALLY_REFUNDED, Status.REFUNDED}),
    Status.PARTIALLY_REFUNDED: frozenset({Status.PARTIALLY_REFUNDED, Status.REFUNDED}),
    Status.FAILED: frozenset(),
    Status.REFUNDED: frozenset(),
}

CAPTURED = frozenset({Status.COMPLETED, Status.PARTIALLY_REFUNDED, Status.REFUNDED})


def can_move(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


def transition(current: Status, target: Status) -> Status:
    """An explicit state change; an illegal one is a 409."""
    if not can_move(current, target):
        raise Conflict(f"a {current.value} payment cannot become {target.value}",
                       slug="illegal-transition", status_from=current.value,
                       status_to=target.value)
    return target


def advance(current: Status, reported: Status) -> Status | None:
    """Apply a provider's report: the new status, or ``None`` when it is old news.

    Notifications arrive duplicated and out of order; the state only moves forward, so a report
    that is not a legal next step is ignored rather than refused.
    """
    return reported if can_move(current, reported) else None


@dataclass(frozen=True, slots=True)
class Order:
    """What a registration costs, as the Event service priced it."""

    total: int
    currency: str
    prepayment: int | None = None

    def __post_init__(self) -> None:
        if self.total <= 0:
            raise Unprocessable("a free registration needs no payment", slug="nothing-to-pay")
        if self.prepayment is not None and not 0 < self.prepayment < self.total:
            raise Unprocessable("the prepayment must be more than 0 and less than the price")


def amount_due(order: Order, kind: Kind, captured_by_kind: dict[Kind, int]) -> int:
    """How much a new payment of ``kind`` is for, given what has already been captured."""
    if kind is Kind.FULL:
        if captured_by_kind:
            raise Conflict("part of this registration is already paid; pay the remainder",
                           slug="already-paid")
        return order.total
    if order.prepayment is None:
        raise Unprocessable("this ticket type has no prepayment option", slug="no-prepayment")
    if kind is Kind.PREPAYMENT:
        if captured_by_kind:
            raise Conflict("this registration already has a captured payment",
                           slug="already-paid")
        return order.prepayment
    prepaid = captured_by_kind.get(Kind.PREPAYMENT, 0)
    if not prepaid:
        raise Conflict("the remainder is due only after the prepayment", slug="no-prepayment-yet")
    if Kind.REMAINDER in captured_by_kind:
        raise Conflict("the remainder is already paid", slug="already-paid")
    return order.total - prepaid


def refund_amount(captured: int, refunded: int, requested: int | None) -> int:
    """The amount to refund now; never more than what is left of the capture."""
    refundable = captured - refunded
    if refundable <= 0:
        raise Conflict("nothing is left to refund on this payment", slug="fully-refunded")
    amount = refundable if requested is None else requested
    if amount <= 0:
        raise Unprocessable("a refund must be a positive amount")
    if amount > refundable:
        raise Conflict(f"at most {refundable} can still be refunded", slug="refund-exceeds-capture",
                       refundable=refundable)
    return amount


def status_after_refund(captured: int, refunded_total: int) -> Status:
    return Status.REFUNDED if refunded_total >= captured else Status.PARTIALLY_REFUNDED
