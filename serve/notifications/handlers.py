"""Reactions of the notification service (SPEC, "Reactions": Notification).

Each handler queues notification rows inside the consumer's unit of work, so the rows commit
with the inbox row of the event (a redelivered event is a duplicate in the inbox and, were it
applied again, the unique (source message, recipient, template) key would still refuse it).
The sender delivers them later. A registration's messages are one live ticket: every change
queues a ``ticket`` row that the sender turns into an edit of the same Telegram message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.common.bounded import BoundedDict
from serve.common.logs import get_logger
from serve.notifications import domain, templates
from storage.notification import chats, notifications, preferences, tickets
from storage.notification import templates as template_rows

Handler = Callable[[UnitOfWork, Envelope], Awaitable[None]]
# Event details the reactions show (title, start); the deployment asks the Event service.
EventLookup = Callable[[str], Awaitable[dict[str, Any] | None]]
log = get_logger("notification.handlers")

FANOUT_BATCH = 1000


def canonical(value: object) -> uuid.UUID:
    return uuid.UUID(str(value))


def ticket_buttons(registration_id: str, status: str,
                   confirmation_url: str | None) -> list[list[dict[str, str]]]:
    """Pay while unpaid (a URL button), Release my seat while it holds seats (a callback)."""
    rows: list[list[dict[str, str]]] = []
    if status == "pending_payment" and confirmation_url:
        rows.append([{"text": "Pay", "url": confirmation_url}])
    if status in ("pending_payment", "confirmed"):
        rows.append([{"text": "Release my seat", "callback_data": f"release:{registration_id}"}])
    return rows


TITLE_SECONDS = 60.0
TITLES_KEPT = 10_000


class Recipients:
    """Locale and preferences of users, read in one query for a batch of them."""

    @staticmethod
    async def load(uow: UnitOfWork, user_ids: list[uuid.UUID]
                   ) -> dict[uuid.UUID, tuple[str, domain.Preferences]]:
        return await Recipients.load_session(uow.session, user_ids)

    @staticmethod
    async def load_one(session: AsyncSession, user_id: uuid.UUID) -> domain.Preferences:
        found = await Recipients.load_session(session, [user_id])
        return found.get(user_id, ("ru", domain.Preferences()))[1]

    @staticmethod
    async def load_session(session: AsyncSession, user_ids: list[uuid.UUID]
                           ) -> dict[uuid.UUID, tuple[str, domain.Preferences]]:
        languages = {r.user_id: r.language_code for r in (await session.execute(
            select(chats.c.user_id, chats.c.language_code)
            .where(chats.c.user_id.in_(user_ids)))).all()}
        saved = {r.user_id: domain.Preferences(
            telegram=r.telegram, opt_out=tuple(r.opt_out or ()), quiet_start=r.quiet_start,
            quiet_end=r.quiet_end, time_zone=r.time_zone or "UTC")
            for r in (await session.execute(
                select(preferences).where(preferences.c.user_id.in_(user_ids)))).all()}
        found: dict[uuid.UUID, tuple[str, domain.Preferences]] = {}
        for user in set(languages) | set(saved):
            found[user] = (domain.locale_of(languages.get(user)),
                           saved.get(user, domain.Preferences()))
        return found


class NotificationHandlers:
    def __init__(self, event_lookup: EventLookup | None = None) -> None:
        self.event_lookup = event_lookup
        # Event titles asked of the Event service, kept TITLE_SECONDS: a sale's thousands of
        # registrations of one event cost one call, not one each.
        self.titles: BoundedDict[str, str] = BoundedDict(TITLES_KEPT)

    def handlers(self) -> dict[str, Handler]:
        return {"user.registered": self.user_registered,
                "registration.created": self.registration_created,
                "payment.created": self.payment_created,
                "payment.completed": self.payment_completed,
                "payment.refunded": self.payment_refunded,
                "event.cancelled": self.event_cancelled,
                "event.reminder": self.event_reminder,
                "reservation.expired": self.reservation_expired,
                "registration.cancelled": self.registration_cancelled,
                "checkin.completed": self.checkin_completed}

    # --- queueing ---
    async def _bodies(self, uow: UnitOfWork, key: str) -> dict[str, str]:
        saved = (await uow.session.execute(
            select(template_rows.c.locale, template_rows.c.body)
            .where(template_rows.c.key == key))).all()
        return {**templates.DEFAULTS[key], **{r.locale: r.body for r in saved}}

    async def queue(self, uow: UnitOfWork, envelope: Envelope, key: str, message_type: str,
                    recipients: list[tuple[uuid.UUID, dict[str, Any]]], *,
                    extra: dict[str, Any] | None = None,
                    registration_id: uuid.UUID | None = None,
                    event_id: uuid.UUID | None = None) -> int:
        """Render ``key`` for each (recipient, context) and insert the rows in batches; rows
        already there (the same source message, recipient and template) are left alone."""
        bodies = await self._bodies(uow, key)
        now = datetime.now(UTC)
        queued = 0
        rendered: dict[tuple[str, int], str] = {}  # a fan-out shares one context
        for start in range(0, len(recipients), FANOUT_BATCH):
            batch = recipients[start:start + FANOUT_BATCH]
            known = await Recipients.load(uow, [user for user, _ in batch])
            values = []
            for user, context in batch:
                locale, prefs = known.get(user, ("ru", domain.Preferences()))
                verdict, until = domain.decide(prefs, message_type, now)
                memo = (locale, id(context))
                if memo not in rendered:
                    rendered[memo] = templates.render(bodies.get(locale, bodies["ru"]), context)
                text = rendered[memo]
                values.append({
                    "recipient_id": user, "template_key": key, "locale": locale,
                    "source_message_id": envelope.id, "registration_id": registration_id,
                    "event_id": event_id, "urgent": message_type in domain.NEVER_SUPPRESSED,
                    "payload": {"type": message_type, "text": text, **(extra or {})},
                    "status": "suppressed" if verdict == "suppress" else "queued",
                    "not_before": until or now,
                })
            result = await uow.session.execute(
                insert(notifications).values(values).on_conflict_do_nothing(
                    index_elements=["source_message_id", "recipient_id", "template_key"]))
            queued += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return queued

    async def _title(self, event_id: str, fallback: str | None = None) -> str:
        if fallback:
            return fallback
        kept = self.titles.get(event_id)
        if kept is not None:
            return kept
        if self.event_lookup is not None:
            try:
                found = await self.event_lookup(event_id)
            except Exception as exc:
                log.warning("event %s details unavailable: %s", event_id, exc)
                found = None
            if found and found.get("title"):
                self.titles.set(event_id, str(found["title"]), time.monotonic() + TITLE_SECONDS)
                return str(found["title"])
        return "Afisha"

    async def _queue_ticket(self, uow: UnitOfWork, envelope: Envelope,
                            registration_id: uuid.UUID, **changes: Any) -> None:
        """Move the live ticket and queue the edit that shows it."""
        if changes:
            await uow.session.execute(
                update(tickets).where(tickets.c.registration_id == registration_id)
                .values(**changes, updated_at=datetime.now(UTC)))
        row = (await uow.session.execute(
            select(tickets).where(tickets.c.registration_id == registration_id))).first()
        if row is None:
            log.info("no live ticket for registration %s", registration_id)
            return
        reg = str(registration_id)
        context = {"title": row.title or "Afisha", "quantity": row.quantity,
                   "status": row.status, "amount": row.amount, "currency": row.currency,
                   "expires_at": row.expires_at}
        photo = "qr" if row.status in ("confirmed", "checked_in") else "card"
        await self.queue(uow, envelope, "ticket", "ticket", [(row.user_id, context)],
                         extra={"live": True, "photo": photo, "protect": True,
                                "buttons": ticket_buttons(reg, row.status,
                                                          row.confirmation_url)},
                         registration_id=registration_id, event_id=row.event_id)

    # --- reactions ---
    async def user_registered(self, uow: UnitOfWork, envelope: Envelope) -> None:
        data = envelope.data
        user = canonical(data["user_id"])
        if data.get("telegram_id"):  # a private chat's id is the user's Telegram id
            await uow.session.execute(
                insert(chats).values(user_id=user, chat_id=int(data["telegram_id"]))
                .on_conflict_do_nothing())
        await self.queue(uow, envelope, "welcome", "welcome",
                         [(user, {"name": data.get("display_name") or ""})])

    async def registration_created(self, uow: UnitOfWork, envelope: Envelope) -> None:
        """Free: the ticket with its QR; paid: what is reserved, the deadline and Pay. A
        waiting-list offer is the same live ticket with an offer notice."""
        data = envelope.data
        reg, event = canonical(data["registration_id"]), canonical(data["event_id"])
        title = await self._title(str(event))
        await uow.session.execute(insert(tickets).values(
            registration_id=reg, event_id=event, user_id=canonical(data["user_id"]),
            status=data["status"], title=title, quantity=data["quantity"],
            amount=data["amount"], currency=data["currency"],
            confirmation_url=data.get("confirmation_url"), expires_at=data.get("expires_at"),
        ).on_conflict_do_nothing())
        await self._queue_ticket(uow, envelope, reg)
        if data.get("waitlist_offer"):
            await self.queue(uow, envelope, "waitlist_offer", "waitlist_offer",
                             [(canonical(data["user_id"]),
                               {"title": title, "expires_at": data.get("expires_at") or ""})],
                             registration_id=reg, event_id=event)

    async def payment_created(self, uow: UnitOfWork, envelope: Envelope) -> None:
        """The live ticket gets its Pay button (the payment's confirmation_url)."""
        data = envelope.data
        if data.get("confirmation_url"):
            await self._queue_ticket(uow, envelope, canonical(data["registration_id"]),
                                     confirmation_url=data["confirmation_url"])

    async def payment_completed(self, uow: UnitOfWork, envelope: Envelope) -> None:
        data = envelope.data
        reg = canonical(data["registration_id"])
        title = await self._title(str(data["event_id"]))
        await self.queue(uow, envelope, "receipt", "receipt", [(canonical(data["user_id"]), {
            "title": title, "amount": data["amount"], "currency": data["currency"]})],
            registration_id=reg, event_id=canonical(data["event_id"]))
        await self._queue_ticket(uow, envelope, reg, status="confirmed", confirmation_url=None)

    async def payment_refunded(self, uow: UnitOfWork, envelope: Envelope) -> None:
        data = envelope.data
        title = await self._title(str(data["event_id"]))
        await self.queue(uow, envelope, "refund", "refund", [(canonical(data["user_id"]), {
            "title": title, "amount": data["refunded_amount"], "currency": data["currency"]})],
            registration_id=canonical(data["registration_id"]),
            event_id=canonical(data["event_id"]))

    async def checkin_completed(self, uow: UnitOfWork, envelope: Envelope) -> None:
        await self._queue_ticket(uow, envelope, canonical(envelope.data["registration_id"]),
                                 status="checked_in")

    async def registration_cancelled(self, uow: UnitOfWork, envelope: Envelope) -> None:
        await self._queue_ticket(uow, envelope, canonical(envelope.data["registration_id"]),
                                 status="cancelled")

    async def reservation_expired(self, uow: UnitOfWork, envelope: Envelope) -> None:
        data = envelope.data
        reg = canonical(data["registration_id"])
        title = await self._title(str(data["event_id"]))
        await self.queue(uow, envelope, "expiry", "expiry",
                         [(canonical(data["user_id"]), {"title": title})],
                         registration_id=reg, event_id=canonical(data["event_id"]))
        await self._queue_ticket(uow, envelope, reg, status="expired")

    async def event_cancelled(self, uow: UnitOfWork, envelope: Envelope) -> None:
        """A notice to every registrant of the event, inserted in batches of FANOUT_BATCH in
        this one transaction; their live tickets are marked cancelled."""
        data = envelope.data
        event = canonical(data["event_id"])
        users = list((await uow.session.scalars(
            select(tickets.c.user_id).where(
                tickets.c.event_id == event,
                tickets.c.status.in_(("pending_payment", "confirmed", "checked_in")))
            .distinct())).all())
        context = {"title": data["title"], "starts_at": data["starts_at"]}
        queued = await self.queue(uow, envelope, "cancellation", "cancellation",
                                  [(u, context) for u in users], event_id=event)
        await uow.session.execute(
            update(tickets).where(tickets.c.event_id == event).values(status="cancelled"))
        log.info("event %s cancelled: %d notices queued", event, queued)

    async def event_reminder(self, uow: UnitOfWork, envelope: Envelope) -> None:
        data = envelope.data
        event = canonical(data["event_id"])
        users = list((await uow.session.scalars(
            select(tickets.c.user_id).where(tickets.c.event_id == event,
                                            tickets.c.status == "confirmed").distinct())).all())
        context = {"title": data["title"], "starts_at": data["starts_at"]}
        await self.queue(uow, envelope, "reminder", "reminder",
                         [(u, context) for u in users], event_id=event)
