"""Event and registration lifecycles and ticket-type rules, table-driven (no Ray, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from serve.common.errors import Conflict, Unprocessable
from serve.common.problems import status_of
from serve.events.domain import (
    EVENT_TRANSITIONS,
    REGISTRATION_TRANSITIONS,
    EventStatus,
    RegistrationStatus,
    TicketTypeRules,
    charge_for,
    check_can_register,
    check_quantity_change,
    transition_event,
    transition_registration,
    validate_event,
    validate_ticket_type,
)

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
LEGAL_EVENT = {
    ("draft", "publish"): "published",
    ("published", "unpublish"): "draft",
    ("published", "cancel"): "cancelled",
    ("published", "complete"): "completed",
    ("draft", "cancel"): "cancelled",
}
EVENT_ACTIONS = ("publish", "unpublish", "cancel", "complete")


@pytest.mark.parametrize(("status", "action"), list(product(EventStatus, EVENT_ACTIONS)))
def test_every_event_transition_is_legal_or_a_409(status: EventStatus, action: str) -> None:
    expected = LEGAL_EVENT.get((status.value, action))
    if expected is None:
        with pytest.raises(Conflict) as err:
            transition_event(status, action)
        assert err.value.slug == "illegal-transition" and status_of(err.value)[0] == 409
    else:
        assert transition_event(status, action) == expected


def test_cancelled_and_completed_events_are_final() -> None:
    assert not [k for k in EVENT_TRANSITIONS
                if k[0] in (EventStatus.CANCELLED, EventStatus.COMPLETED)]


LEGAL_REGISTRATION = {
    ("pending_payment", "pay"): "confirmed",
    ("pending_payment", "expire"): "expired",
    ("pending_payment", "cancel"): "cancelled",
    ("pending_payment", "refund"): "cancelled",
    ("expired", "pay"): "confirmed",
    ("confirmed", "cancel"): "cancelled",
    ("confirmed", "refund"): "cancelled",
    ("confirmed", "check_in"): "checked_in",
}
REGISTRATION_ACTIONS = ("pay", "expire", "cancel", "refund", "check_in")


@pytest.mark.parametrize(("status", "action"),
                         list(product(RegistrationStatus, REGISTRATION_ACTIONS)))
def test_every_registration_transition_is_legal_or_a_409(status: RegistrationStatus,
                                                         action: str) -> None:
    expected = LEGAL_REGISTRATION.get((status.value, action))
    if expected is None:
        with pytest.raises(Conflict):
            transition_registration(status, action)
    else:
        assert transition_registration(status, action) == expected
    assert len(REGISTRATION_TRANSITIONS) == len(LEGAL_REGISTRATION)


def rules(**changes: object) -> TicketTypeRules:
    values: dict[str, object] = {"price": 150000, "currency": "RUB", "quantity": 100}
    values.update(changes)
    return TicketTypeRules(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("changes", [
    {"price": -1}, {"price": 10.5}, {"price": True}, {"currency": "rub"}, {"currency": "RUBL"},
    {"quantity": 0}, {"per_user_limit": 0}, {"price": 0, "prepayment_amount": 100},
    {"prepayment_amount": 0}, {"prepayment_amount": 150000},
    {"sales_start": NOW, "sales_end": NOW},
])
def test_invalid_ticket_types_are_422(changes: dict[str, object]) -> None:
    with pytest.raises(Unprocessable):
        validate_ticket_type(rules(**changes))


@pytest.mark.parametrize("changes", [
    {}, {"price": 0}, {"per_user_limit": 2}, {"prepayment_amount": 50000},
    {"sales_start": NOW, "sales_end": NOW + timedelta(days=1)},
])
def test_valid_ticket_types_pass(changes: dict[str, object]) -> None:
    validate_ticket_type(rules(**changes))


def test_charge_is_integer_minor_units_with_optional_prepayment() -> None:
    assert charge_for(rules(), 2, "full").amount == 300000
    charge = charge_for(rules(prepayment_amount=50000), 3, "prepayment")
    assert (charge.amount, charge.prepayment_amount, charge.currency) == (450000, 150000, "RUB")
    with pytest.raises(Unprocessable):
        charge_for(rules(), 1, "prepayment")
    with pytest.raises(Unprocessable):
        charge_for(rules(), 1, "barter")


@pytest.mark.parametrize(("status", "changes", "slug"), [
    ("draft", {}, "registration-closed"),
    ("cancelled", {}, "registration-closed"),
    ("published", {"sales_start": NOW + timedelta(seconds=1)}, "sales-not-started"),
    ("published", {"sales_end": NOW}, "sales-ended"),
])
def test_registration_needs_a_published_event_and_an_open_window(
        status: str, changes: dict[str, object], slug: str) -> None:
    with pytest.raises(Conflict) as err:
        check_can_register(status, rules(**changes), NOW)
    assert err.value.slug == slug


def test_registration_inside_the_window_is_allowed() -> None:
    check_can_register("published", rules(sales_start=NOW, sales_end=NOW + timedelta(1)), NOW)


def test_quantity_only_grows_after_publishing() -> None:
    check_quantity_change("draft", 10, 5)
    check_quantity_change("published", 10, 20)
    with pytest.raises(Conflict):
        check_quantity_change("published", 10, 9)


@pytest.mark.parametrize(("visibility", "group_id", "ok"), [
    ("public", None, True), ("group", "g1", True), ("group", None, False), ("public", "g1", False),
])
def test_event_visibility_and_group(visibility: str, group_id: str | None, ok: bool) -> None:
    if ok:
        validate_event(NOW, NOW + timedelta(hours=2), visibility, group_id)
    else:
        with pytest.raises(Unprocessable):
            validate_event(NOW, NOW + timedelta(hours=2), visibility, group_id)
    with pytest.raises(Unprocessable):
        validate_event(NOW, NOW, "public", None)
