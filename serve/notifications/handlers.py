"""Reactions of the notification service (SPEC, "Reactions": Notification).

Each handler queues notification rows inside the consumer's unit of work, so the rows commit
with the inbox row of the event (a redelivered event is a duplicate in the inbox and, were it
applied again, the unique (source message, recipient, template) key would still refuse it).
The sender delivers them later. A registration's messages are one live ticket: every change
queues a ``ticket`` row that the sender turns into an edit of the same Telegram message; a
reservation to be paid is first sent with its Pay button, when its payment is created. A
recipient without a linked chat gets a ``suppressed`` row in the same insert, with
nothing rendered; ``registration.created`` and ``payment.created`` are applied per delivered
batch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.consumer import BatchHandler
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.common.bounded import BoundedDict
from serve.common.logs import get_logger
from serve.notifications import domain, templates
from storage import bulk
from storage.notification import chats, notifications, preferences, tickets
from storage.notification import templates as template_rows

Handler = Callable[[UnitOfWork, Envelope], Awaitable[None]]
# Event details the reactions show (title, start); the deployment asks the Event service.
EventLookup = Callable[[str], Awaitable[dict[str, Any] | None]]
# A user's Telegram chat as the User service knows it.
ChatLookup = Callable[[uuid.UUID], Awaitable[int | None]]
log = get_logger("notification.handlers")

FANOUT_BATCH = 1000
TICKET = ("registration_id", "event_id", "user_id", "status", "title", "quantity", "amount",
          "currency", "confirmation_url", "expires_at")


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


HOLDING = ("pending_payment", "confirmed", "checked_in")
SUPERSEDED = "superseded: the event was cancelled before this ticket was sent"
# payment.created's Pay button on the live ticket. A payment can be consumed before its
# registration (two relays): its ticket is then a stub (no title yet) that registration.created
# fills in, keeping the button.
PAID = ("registration_id", "event_id", "user_id", "status", "amount", "currency",
        "confirmation_url")
SET_URLS = bulk.insert(tickets, PAID, (
    "ON CONFLICT (registration_id) DO UPDATE SET confirmation_url = "
    "COALESCE(excluded.confirmation_url, t.confirmation_url), updated_at = now() RETURNING t.*"))
# registration.created's ticket, new or filling in a stub; a ticket already written (the handler
# applied again) is not returned, so nothing is queued for it again.
FILL_STUB = "ON CONFLICT (registration_id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in TICKET[1:] if c != "confirmation_url") + (
    ", updated_at = now() WHERE t.title IS NULL RETURNING t.*")


def awaits_pay_button(row: Any) -> bool:
    """A reservation to be paid whose payment is not created yet: its live ticket is first
    sent with the Pay button (payment.created), so a sale costs one message per ticket, not a
    message and an edit moments later."""
    return row.status == "pending_payment" and row.amount > 0 and not row.confirmation_url


def live_ticket(row: Any, source_id: uuid.UUID, shown: str | None = None) -> Pending:
    """The live ticket's message for a ``tickets`` row: its caption shows ``shown`` (else the
    row's status), its photo the QR once paid, its buttons what the status allows."""
    reg = str(row.registration_id)
    context = {"title": row.title or "Afisha", "quantity": row.quantity,
               "status": shown or row.status, "amount": row.amount, "currency": row.currency,
               "expires_at": row.expires_at}
    photo = "qr" if row.status in ("confirmed", "checked_in") else "card"
    return Pending(source_id, row.user_id, context, row.registration_id, row.event_id,
                   {"live": True, "photo": photo, "protect": True,
                    "buttons": ticket_buttons(reg, row.status, row.confirmation_url)})


def _memo_key(context: dict[str, Any]) -> str:
    return repr(sorted(context.items()))


# Queue notifications unless this source message already queued one for the recipient.
QUEUED = ("recipient_id", "template_key", "locale", "source_message_id", "registration_id",
          "event_id", "urgent", "status", "not_before", "last_error", "payload")
QUEUE = bulk.insert(notifications, QUEUED, "ON CONFLICT (source_message_id, recipient_id, "
                    "template_key) DO NOTHING RETURNING t.id")
TITLE_SECONDS = 60.0
TITLES_KEPT = 10_000
NO_CHAT = "no Telegram chat linked"


@dataclass(frozen=True)
class Recipient:
    locale: str = "ru"
    prefs: domain.Preferences = field(default_factory=domain.Preferences)
    has_chat: bool = False


@dataclass(frozen=True)
class Pending:
    """One message to queue: who, from which source message, with what context."""

    source_id: uuid.UUID
    user: uuid.UUID
    context: dict[str, Any]
    registration_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    extra: dict[str, Any] | None = None


class Recipients:
    """Chat, locale and preferences of users, read in one query each for a batch of them."""

    @staticmethod
    async def load(uow: UnitOfWork, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, Recipient]:
        return await Recipients.load_many(uow.session, user_ids)

    @staticmethod
    async def load_one(session: AsyncSession, user_id: uuid.UUID) -> domain.Preferences:
        found = await Recipients.load_many(session, [user_id])
        return found.get(user_id, Recipient()).prefs

    @staticmethod
    async def load_session(session: AsyncSession, user_ids: list[uuid.UUID]
                           ) -> dict[uuid.UUID, tuple[str, domain.Preferences]]:
        return {user: (r.locale, r.prefs)
                for user, r in (await Recipients.load_many(session, user_ids)).items()}

    @staticmethod
    async def load_many(session: AsyncSession, user_ids: list[uuid.UUID]
                        ) -> dict[uuid.UUID, Recipient]:
        languages = {r.user_id: r.language_code for r in (await session.execute(
            select(chats.c.user_id, chats.c.language_code)
            .where(chats.c.user_id.in_(user_ids)))).all()}
        saved = {r.user_id: domain.Preferences(
            telegram=r.telegram, opt_out=tuple(r.opt_out or ()), quiet_start=r.quiet_start,
            quiet_end=r.quiet_end, time_zone=r.time_zone or "UTC")
            for r in (await session.execute(
                select(preferences).where(preferences.c.user_id.in_(user_ids)))).all()}
        return {user: Recipient(domain.locale_of(languages.get(user)),
                                saved.get(user, domain.Preferences()), user in languages)
                for user in set(languages) | set(saved)}


class NotificationHandlers:
    def __init__(self, event_lookup: EventLookup | None = None,
                 chat_lookup: ChatLookup | None = None, *, render_without_chat: bool = False
                 ) -> None:
        self.event_lookup = event_lookup
        self.chat_lookup = chat_lookup
        # Without a bot token every message is rendered into the log (``logged``), so a local
        # run shows what would be sent; with one, a user without a chat costs no rendering.
        self.render_without_chat = render_without_chat
        # Event titles asked of the Event service, kept TITLE_SECONDS: a sale's thousands of
        # registrations of one event cost one call, not one each.
        self.titles: BoundedDict[str, str] = BoundedDict(TITLES_KEPT)

    def handlers(self) -> dict[str, Handler]:
        return {"user.registered": self.user_registered,
                "user.updated": self.user_updated,
                "registration.created": BatchHandler(self.registrations_created),
                "payment.created": BatchHandler(self.payments_created),
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
        """Queue ``key`` for each (recipient, context) of one source message."""
        return await self.queue_many(uow, key, message_type, [
            Pending(envelope.id, user, context, registration_id, event_id, extra)
            for user, context in recipients])

    async def queue_many(self, uow: UnitOfWork, key: str, message_type: str,
                         pending: list[Pending]) -> int:
        """Render and insert the rows, FANOUT_BATCH per statement; rows already there
        (the same source message, recipient and template) are left alone. A recipient without
        a Telegram chat, or who does not want this type, gets a ``suppressed`` row in the same
        insert and nothing is rendered for them."""
        if not pending:
            return 0
        bodies = await self._bodies(uow, key)
        now = datetime.now(UTC)
        queued = 0
        rendered: dict[tuple[str, str], str] = {}  # a fan-out shares one context
        urgent = message_type in domain.NEVER_SUPPRESSED
        for start in range(0, len(pending), FANOUT_BATCH):
            batch = pending[start:start + FANOUT_BATCH]
            known = await Recipients.load(uow, list({p.user for p in batch}))
            values = []
            for item in batch:
                found = known.get(item.user, Recipient())
                verdict, until = domain.decide(found.prefs, message_type, now)
                row: dict[str, Any] = {
                    "recipient_id": item.user, "template_key": key, "locale": found.locale,
                    "source_message_id": item.source_id,
                    "registration_id": item.registration_id, "event_id": item.event_id,
                    "urgent": urgent, "status": "queued", "not_before": until or now,
                    "last_error": None}
                if not found.has_chat and not self.render_without_chat:
                    verdict, row["last_error"] = "suppress", NO_CHAT
                if verdict == "suppress":
                    row.update(status="suppressed", payload={"type": message_type})
                    values.append(row)
                    continue
                memo = (found.locale, _memo_key(item.context))
                if memo not in rendered:
                    rendered[memo] = templates.render(bodies.get(found.locale, bodies["ru"]),
                                                      item.context)
                row["payload"] = {"type": message_type, "text": rendered[memo],
                                  **(item.extra or {})}
                values.append(row)
            result = await uow.session.execute(QUEUE, bulk.params(notifications, QUEUED, values))
            queued += len(result.all())
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
        await self.queue_many(uow, "ticket", "ticket", [live_ticket(row, envelope.id)])

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

    async def user_updated(self, uow: UnitOfWork, envelope: Envelope) -> None:
        """A Telegram account attached on the site (Login Widget): its chat, from the User
        service, so the user's next messages reach it."""
        data = envelope.data
        if "telegram" not in data.get("changed", ()) or self.chat_lookup is None:
            return
        user = canonical(data["user_id"])
        chat = await self.chat_lookup(user)
        if chat is None:
            return
        await uow.session.execute(delete(chats).where(chats.c.chat_id == chat,
                                                      chats.c.user_id != user))
        await uow.session.execute(insert(chats).values(user_id=user, chat_id=chat)
                                  .on_conflict_do_update(index_elements=["user_id"], set_={
                                      "chat_id": chat, "updated_at": func.now()}))

    async def registrations_created(self, uow: UnitOfWork, envelopes: list[Envelope]) -> None:
        """Free: the ticket with its QR; paid: what is reserved, the deadline and Pay, queued
        here only if the payment is known (else by payment.created, ``awaits_pay_button``). A
        waiting-list offer is the same live ticket with an offer notice. A delivered batch is
        one multi-row insert of live tickets and one of notifications."""
        values = []
        for envelope in envelopes:
            data = envelope.data
            values.append({
                "registration_id": canonical(data["registration_id"]),
                "event_id": canonical(data["event_id"]), "user_id": canonical(data["user_id"]),
                "status": data["status"], "title": await self._title(str(data["event_id"])),
                "quantity": data["quantity"], "amount": data["amount"],
                "currency": data["currency"], "confirmation_url": data.get("confirmation_url"),
                "expires_at": data.get("expires_at")})
        written = {r.registration_id: r for r in (await uow.session.execute(
            bulk.insert(tickets, TICKET, FILL_STUB), bulk.params(tickets, TICKET, values))).all()}
        await self.queue_many(uow, "ticket", "ticket", [
            live_ticket(written[v["registration_id"]], e.id)
            for v, e in zip(values, envelopes, strict=True)
            if v["registration_id"] in written
            and not awaits_pay_button(written[v["registration_id"]])])
        await self.queue_many(uow, "waitlist_offer", "waitlist_offer", [
            Pending(e.id, v["user_id"], {"title": v["title"], "expires_at": v["expires_at"] or ""},
                    v["registration_id"], v["event_id"])
            for v, e in zip(values, envelopes, strict=True) if e.data.get("waitlist_offer")])

    async def payments_created(self, uow: UnitOfWork, envelopes: list[Envelope]) -> None:
        """The live tickets get their Pay buttons (the payments' confirmation_url) and are
        queued: one multi-row upsert and one insert for a delivered batch. A ticket whose
        registration.created has not come yet is kept as a stub until it does."""
        latest = {canonical(e.data["registration_id"]): e for e in envelopes}
        moved = (await uow.session.execute(SET_URLS, bulk.params(tickets, PAID, [{
            "registration_id": reg, "event_id": canonical(e.data["event_id"]),
            "user_id": canonical(e.data["user_id"]), "status": "pending_payment",
            "amount": e.data["amount"], "currency": e.data["currency"],
            "confirmation_url": e.data.get("confirmation_url")}
            for reg, e in sorted(latest.items())]))).all()
        await self.queue_many(uow, "ticket", "ticket", [
            live_ticket(row, latest[row.registration_id].id) for row in moved
            if row.title is not None])

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
        """A notice to every registrant of the event, and every live ticket Telegram shows is
        edited to "cancelled" with its buttons removed, both inserted in batches of
        FANOUT_BATCH in this one transaction (the sender paces them within the limits). A
        ticket message still queued (never sent) is superseded: the notice says it all."""
        data = envelope.data
        event = canonical(data["event_id"])
        moved = (await uow.session.execute(
            update(tickets).where(tickets.c.event_id == event,
                                  tickets.c.status.in_(HOLDING))
            .values(status="cancelled", updated_at=datetime.now(UTC))
            .returning(*tickets.c))).all()
        users = list(dict.fromkeys(r.user_id for r in moved))
        context = {"title": data["title"], "starts_at": data["starts_at"]}
        queued = await self.queue(uow, envelope, "cancellation", "cancellation",
                                  [(u, context) for u in users], event_id=event)
        await uow.session.execute(
            update(notifications).where(notifications.c.event_id == event,
                                        notifications.c.template_key == "ticket",
                                        notifications.c.status == "queued")
            .values(status="suppressed", last_error=SUPERSEDED))
        edits = await self.queue_many(uow, "ticket", "ticket", [
            live_ticket(r, uuid.uuid5(envelope.id, str(r.registration_id)), "event_cancelled")
            for r in moved if r.message_id is not None])
        log.info("event %s cancelled: %d notices and %d ticket edits queued", event, queued,
                 edits)

    async def event_reminder(self, uow: UnitOfWork, envelope: Envelope) -> None:
        data = envelope.data
        event = canonical(data["event_id"])
        users = list((await uow.session.scalars(
            select(tickets.c.user_id).where(tickets.c.event_id == event,
                                            tickets.c.status == "confirmed").distinct())).all())
        context = {"title": data["title"], "starts_at": data["starts_at"]}
        await self.queue(uow, envelope, "reminder", "reminder",
                         [(u, context) for u in users], event_id=event)
