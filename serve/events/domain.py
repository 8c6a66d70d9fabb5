"""Pure rules of the event service: lifecycles as transition tables, ticket-type rules.

Standard library only (plus the shared error hierarchy, itself stdlib only). The inventory core
lives next door in ``serve.events.inventory``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from serve.common.errors import Conflict, Unprocessable


class EventStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class RegistrationStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    CHECKED_IN = "checked_in"


# (current status, action) -> next status. Anything absent is illegal.
EVENT_TRANSITIONS: dict[tuple[EventStatus, str], EventStatus] = {
    (EventStatus.DRAFT, "publish"): EventStatus.PUBLISHED,
    (EventStatus.PUBLISHED, "unpublish"): EventStatus.DRAFT,
    (EventStatus.PUBLISHED, "cancel"): EventStatus.CANCELLED,
    (EventStatus.PUBLISHED, "complete"): EventStatus.COMPLETED,
    (EventStatus.DRAFT, "cancel"): EventStatus.CANCELLED,
}

_R = RegistrationStatus
REGISTRATION_TRANSITIONS: dict[tuple[RegistrationStatus, str], RegistrationStatus] = {
    (_R.PENDING_PAYMENT, "pay"): _R.CONFIRMED,
    (_R.PENDING_PAYMENT, "expire"): _R.EXPIRED,
    (_R.PENDING_PAYMENT, "cancel"): _R.CANCELLED,
    (_R.PENDING_PAYMENT, "refund"): _R.CANCELLED,
    (_R.EXPIRED, "pay"): _R.CONFIRMED,  # a late payment, accepted only while seats remain
    (_R.CONFIRMED, "cancel"): _R.CANCELLED,
    (_R.CONFIRMED, "refund"): _R.CANCELLED,
    (_R.CONFIRMED, "check_in"): _R.CHECKED_IN,
}

# Registrations that hold or own seats.
SEAT_HOLDING = frozenset({_R.PENDING_PAYMENT, _R.CONFIRMED, _R.CHECKED_IN})
TICKET_ISSUED = frozenset({_R.CONFIRMED, _R.CHECKED_IN})
MANAGER_ROLES = frozenset({"owner", "moderator"})


def transition_event(status: str, action: str) -> EventStatus:
    """The event's next status, or 409 ``illegal-transition``."""
    nxt = EVENT_TRANSITIONS.get((EventStatus(status), action))
    if nxt is None:
        raise Conflict(f"cannot {action} an event that is {status}", slug="illegal-transition")
    return nxt


def transition_registration(status: str, action: str) -> RegistrationStatus:
    """The registration's next status, or 409 ``illegal-transition``."""
    nxt = REGISTRATION_TRANSITIONS.get((RegistrationStatus(status), action))
    if nxt is None:
        raise Conflict(f"cannot {action.replace('_', '-')} a registration that is {status}",
                       slug="illegal-transition")
    return nxt


def can_transition_registration(status: str, action: str) -> bool:
    return (RegistrationStatus(status), action) in REGISTRATION_TRANSITIONS


# --- events ---

VISIBILITIES = ("public", "group")
PARTICIPANTS_VISIBILITIES = ("open", "closed")


def validate_event(starts_at: datetime, ends_at: datetime, visibility: str,
                   group_id: str | None) -> None:
    if ends_at <= starts_at:
        raise Unprocessable("ends_at must be after starts_at")
    if visibility == "group" and not group_id:
        raise Unprocessable("a group event needs group_id")
    if visibility == "public" and group_id:
        raise Unprocessable("a public event has no group_id")


def editable(status: str) -> None:
    """Cancelled and completed events are final: nothing about them changes any more."""
    if status in (EventStatus.CANCELLED, EventStatus.COMPLETED):
        raise Conflict(f"the event is {status}; it can no longer change", slug="event-final")


# --- ticket types ---

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True, slots=True)
class TicketTypeRules:
    price: int  # minor units; 0 = free
    currency: str
    quantity: int
    per_user_limit: int | None = None
    prepayment_amount: int | None = None  # minor units per ticket
    sales_start: datetime | None = None
    sales_end: datetime | None = None

    @property
    def is_free(self) -> bool:
        return self.price == 0


def validate_ticket_type(rules: TicketTypeRules) -> None:
    """422 naming the first rule a ticket type breaks."""
    if isinstance(rules.price, bool) or not isinstance(rules.price, int) or rules.price < 0:
        raise Unprocessable("price.amount is a non-negative integer in minor units")
    if not _CURRENCY.match(rules.currency):
        raise Unprocessable("price.currency is an ISO 4217 code such as RUB")
    if rules.quantity < 1:
        raise Unprocessable("quantity must be at least 1")
    if rules.per_user_limit is not None and rules.per_user_limit < 1:
        raise Unprocessable("per_user_limit must be at least 1")
    if rules.prepayment_amount is not None:
        if rules.is_free:
            raise Unprocessable("a free ticket has no prepayment")
        if not 0 < rules.prepayment_amount < rules.price:
            raise Unprocessable("prepayment_amount must be above 0 and below the price")
    if rules.sales_start and rules.sales_end and rules.sales_end <= rules.sales_start:
        raise Unprocessable("sales_end must be after sales_start")


def check_quantity_change(event_status: str, old_quantity: int, new_quantity: int) -> None:
    """Once sales may have begun, quantity only grows (so no sold seat is ever taken back)."""
    if event_status != EventStatus.DRAFT and new_quantity < old_quantity:
        raise Conflict("quantity can only be raised once the event has been published",
                       slug="quantity-decrease")


@dataclass(frozen=True, slots=True)
class Charge:
    amount: int  # what the registration costs in total
    currency: str
    prepayment_amount: int | None  # what is due first, when paying a prepayment


def charge_for(rules: TicketTypeRules, quantity: int, payment_mode: str) -> Charge:
    if quantity < 1:
        raise Unprocessable("quantity must be at least 1")
    if payment_mode not in ("full", "prepayment"):
        raise Unprocessable("payment_mode is full or prepayment")
    total = rules.price * quantity
    if payment_mode == "prepayment":
        if rules.prepayment_amount is None:
            raise Unprocessable("this ticket type takes no prepayment; pay in full")
        return Charge(total, rules.currency, rules.prepayment_amount * quantity)
    return Charge(total, rules.currency, None)


def check_can_register(event_status: str, rules: TicketTypeRules, now: datetime) -> None:
    """409 unless the event is published and the ticket type's sales window is open."""
    if event_status != EventStatus.PUBLISHED:
        raise Conflict(f"the event is {event_status}; registrations are closed",
                       slug="registration-closed")
    if rules.sales_start and now < rules.sales_start:
        raise Conflict("sales have not started yet", slug="sales-not-started")
    if rules.sales_end and now >= rules.sales_end:
        raise Conflict("sales have ended", slug="sales-ended")
