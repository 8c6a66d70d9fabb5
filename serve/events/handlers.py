"""Reactions of the event service to other services' events (SPEC, "Reactions").

Each handler is ``async (uow, envelope) -> None``; the consumer runtime records the message in
the inbox within ``uow``'s transaction. Seat changes are made by the event's inventory actor in
its own transaction and are idempotent by status (a redelivered message changes nothing), so
they stay correct even though they do not share ``uow``'s transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.dialects.postgresql import insert

from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.common.errors import Conflict, NotFound
from serve.common.logs import get_logger
from serve.events.service import Inventories
from storage.event import group_members

Handler = Callable[[UnitOfWork, Envelope], Awaitable[None]]
log = get_logger("event.handlers")


def canonical(value: object) -> str:
    """Our ids are canonical UUID strings; other services may spell a UUID differently."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


class EventHandlers:
    def __init__(self, inventory: Inventories) -> None:
        self.inventory = inventory

    def handlers(self) -> dict[str, Handler]:
        return {"payment.completed": self.payment_completed,
                "payment.refunded": self.payment_refunded,
                "group.member.added": self.group_member_added}

    async def payment_completed(self, uow: UnitOfWork, envelope: Envelope) -> None:
        """Confirm; after expiry only while seats remain (else the registration is marked
        ``refund_due`` and registration.cancelled is published)."""
        data = envelope.data
        try:
            result: dict[str, Any] = await self.inventory.call(
                canonical(data["event_id"]), "confirm_payment", canonical(data["registration_id"]))
        except NotFound:
            log.warning("payment %s names unknown registration %s", data.get("payment_id"),
                        data["registration_id"])
            return
        log.info("payment.completed -> registration %s is %s", result["id"], result["status"])

    async def payment_refunded(self, uow: UnitOfWork, envelope: Envelope) -> None:
        """Only a full refund cancels the registration (and returns its seats)."""
        data = envelope.data
        if not data.get("fully_refunded"):
            return
        try:
            await self.inventory.call(canonical(data["event_id"]), "cancel",
                                      canonical(data["registration_id"]), "refunded")
        except (NotFound, Conflict) as exc:  # unknown, or already checked in
            log.warning("refund of registration %s changes nothing: %s",
                        data["registration_id"], exc)

    async def group_member_added(self, uow: UnitOfWork, envelope: Envelope) -> None:
        """Mirror the membership: group events become visible to the new member."""
        data = envelope.data
        await uow.session.execute(
            insert(group_members).values(group_id=data["group_id"], user_id=data["user_id"],
                                         organization_id=data["organization_id"])
            .on_conflict_do_nothing())
