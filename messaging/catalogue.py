"""Every domain event of SPEC with its typed payload, and who consumes what.

Publishing an unknown type, or a payload that does not validate, is an error at the publisher.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- User service ---
class UserRegistered(Payload):
    user_id: str
    email: str | None = None
    display_name: str
    telegram_id: int | None = None


class UserUpdated(Payload):
    user_id: str
    changed: list[str]


class OrganizationRequestCreated(Payload):
    request_id: str
    requester_id: str
    name: str


class OrganizationCreated(Payload):
    organization_id: str
    owner_id: str
    name: str


class OrganizationMemberAdded(Payload):
    organization_id: str
    user_id: str
    role: str


class GroupCreated(Payload):
    group_id: str
    organization_id: str
    name: str


class GroupMemberAdded(Payload):
    group_id: str
    organization_id: str
    user_id: str


# --- Event service ---
class EventChanged(Payload):
    event_id: str
    organization_id: str
    title: str
    starts_at: str
    # The event as it is after the change: who may see it, and the row's version (its
    # updated_at), so a consumer keeps the latest state whatever the arrival order.
    status: str | None = None
    visibility: str | None = None
    updated_at: str | None = None


class EventUpdated(EventChanged):
    changed: list[str]  # the fields the organizer changed


class EventReminder(Payload):
    event_id: str
    organization_id: str
    title: str
    starts_at: str
    offset_minutes: int


class RegistrationCreated(Payload):
    registration_id: str
    event_id: str
    organization_id: str
    ticket_type_id: str
    user_id: str
    quantity: int
    status: str
    amount: int
    currency: str
    payment_mode: str
    prepayment_amount: int | None = None
    reservation_id: str | None = None
    expires_at: str | None = None
    waitlist_offer: bool = False


class WaitlistJoined(Payload):
    entry_id: str
    event_id: str
    organization_id: str
    ticket_type_id: str
    user_id: str
    quantity: int
    joined_at: str


class RegistrationCancelled(Payload):
    registration_id: str
    event_id: str
    user_id: str
    reason: str


class ReservationExpired(Payload):
    reservation_id: str
    registration_id: str
    event_id: str
    user_id: str
    quantity: int


class CheckinCompleted(Payload):
    registration_id: str
    event_id: str
    user_id: str
    checked_in_at: str


# --- Payment service ---
class PaymentChanged(Payload):
    payment_id: str
    registration_id: str
    event_id: str
    user_id: str
    kind: str
    amount: int
    currency: str
    confirmation_url: str | None = None  # payment.created: where the payer pays


class PaymentFailed(PaymentChanged):
    reason: str


class PaymentRefunded(PaymentChanged):
    refund_id: str
    refunded_amount: int
    fully_refunded: bool


class RemainderDue(Payload):
    registration_id: str
    event_id: str
    user_id: str
    amount: int
    currency: str
    due_at: str


# --- Media service ---
class MediaUploaded(Payload):
    media_id: str
    purpose: str
    organization_id: str | None = None
    uploader_id: str
    content_type: str
    bytes: int


class MediaDeleted(Payload):
    media_id: str
    purpose: str
    organization_id: str | None = None


EVENTS: dict[str, type[Payload]] = {
    "user.registered": UserRegistered,
    "user.updated": UserUpdated,
    "organization.request.created": OrganizationRequestCreated,
    "organization.created": OrganizationCreated,
    "organization.member.added": OrganizationMemberAdded,
    "group.created": GroupCreated,
    "group.member.added": GroupMemberAdded,
    "event.created": EventChanged,
    "event.published": EventChanged,
    "event.updated": EventUpdated,
    "event.unpublished": EventChanged,
    "event.cancelled": EventChanged,
    "event.completed": EventChanged,
    "event.reminder": EventReminder,
    "registration.created": RegistrationCreated,
    "registration.cancelled": RegistrationCancelled,
    "waitlist.joined": WaitlistJoined,
    "reservation.expired": ReservationExpired,
    "checkin.completed": CheckinCompleted,
    "payment.created": PaymentChanged,
    "payment.completed": PaymentChanged,
    "payment.failed": PaymentFailed,
    "payment.refunded": PaymentRefunded,
    "payment.remainder.due": RemainderDue,
    "payment.remainder.overdue": RemainderDue,
    "media.uploaded": MediaUploaded,
    "media.deleted": MediaDeleted,
}

PRODUCERS: dict[str, str] = {
    name: ("user" if name.split(".")[0] in {"user", "organization", "group"}
           else "payment" if name.startswith("payment.")
           else "media" if name.startswith("media.") else "event")
    for name in EVENTS
}

# Which service consumes which routing keys (SPEC, "Domain events" and "Reactions").
CONSUMES: dict[str, tuple[str, ...]] = {
    "event": ("payment.completed", "payment.refunded", "group.member.added"),
    "payment": ("registration.created", "registration.cancelled", "event.cancelled",
                "event.updated"),
    "notification": ("user.registered", "user.updated", "registration.created",
                     "payment.created",
                     "payment.completed",
                     "payment.refunded", "event.cancelled", "event.reminder",
                     "reservation.expired", "registration.cancelled", "checkin.completed"),
    # Which events' covers anyone may see (serve.media.handlers).
    "media": ("event.created", "event.published", "event.updated", "event.unpublished",
              "event.cancelled", "event.completed"),
    "analytics": tuple(n for n in EVENTS if n.split(".")[0] in
                       {"event", "registration", "reservation", "checkin", "payment", "user",
                        "organization", "waitlist"}),
}


class UnknownEvent(ValueError):
    pass


class InvalidPayload(ValueError):
    pass


def validate(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The payload as it will travel (JSON-ready), or an error naming what is wrong."""
    schema = EVENTS.get(event_type)
    if schema is None:
        raise UnknownEvent(f"unknown event type {event_type!r}")
    try:
        return schema.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise InvalidPayload(f"invalid payload for {event_type}: {exc}") from exc


def consumers_of(event_type: str) -> list[str]:
    return [service for service, keys in CONSUMES.items() if event_type in keys]
