"""Use cases of the notification API and the bot's updates, over the service's sessions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from serve.common import paging
from serve.common.errors import Forbidden, NotFound, Unauthorized, Unprocessable
from serve.common.logs import get_logger
from serve.notifications import domain, templates
from serve.notifications.handlers import Recipients
from storage.notification import chats, jobs, notifications, preferences, tickets, updates
from storage.notification import templates as template_rows

log = get_logger("notification.service")

# (user id, registration id) -> cancels the registration through the Event service
Release = Callable[[str, str], Awaitable[None]]
# (chat id, text) -> sends a direct reply through the limiter
Reply = Callable[[int, str], Awaitable[None]]
# (chat id, callback id, text) -> answers a callback query
Answer = Callable[[str, str], Awaitable[None]]
# (telegram id, token) -> accepts an organization or group invite
AcceptInvite = Callable[[int, str], Awaitable[Any]]
# (user id, event id or None) -> (title, signed dashboard URL) of the user's events
Stats = Callable[[str, str | None], Awaitable[list[tuple[str, str]]]]
# (user id, chat id, reachable) -> tells the User service; False: no such account
TellUser = Callable[[str, int, bool], Awaitable[bool]]
STATS_REFUSED = ("Statistics are for organizers: /stats shows the dashboards of the events "
                 "of organizations you own or moderate.")


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound(f"no {what} {value}") from exc


# --- templates ---
async def list_templates(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    async with sessions() as session:
        saved = {(r.key, r.locale): r.body
                 for r in (await session.execute(select(template_rows))).all()}
    return [{"key": key, "locale": locale, "body": saved.get((key, locale), body),
             "customized": (key, locale) in saved}
            for key, bodies in templates.DEFAULTS.items() for locale, body in bodies.items()]


async def put_template(sessions: async_sessionmaker[AsyncSession], key: str, locale: str,
                       body: str, by: str) -> dict[str, Any]:
    """Render against sample data first: a template that fails is a 422, the old one stays."""
    templates.check(key, body)
    async with sessions() as session, session.begin():
        await session.execute(insert(template_rows).values(
            key=key, locale=locale, body=body, updated_by=uuid.UUID(by))
            .on_conflict_do_update(index_elements=["key", "locale"],
                                   set_={"body": body, "updated_by": uuid.UUID(by),
                                         "updated_at": func.now()}))
    return {"key": key, "locale": locale, "body": body, "customized": True}


# --- preferences ---
def preferences_view(prefs: domain.Preferences) -> dict[str, Any]:
    return {"telegram": prefs.telegram, "opt_out": list(prefs.opt_out),
            "quiet_start": prefs.quiet_start, "quiet_end": prefs.quiet_end,
            "time_zone": prefs.time_zone, "never_suppressed": sorted(domain.NEVER_SUPPRESSED)}


async def get_preferences(sessions: async_sessionmaker[AsyncSession], user: str
                          ) -> dict[str, Any]:
    async with sessions() as session:
        found = await Recipients.load_one(session, uuid.UUID(user))
    return preferences_view(found)


async def put_preferences(sessions: async_sessionmaker[AsyncSession], user: str,
                          prefs: domain.Preferences) -> dict[str, Any]:
    prefs.validate()
    values = {"telegram": prefs.telegram, "opt_out": list(prefs.opt_out),
              "quiet_start": prefs.quiet_start, "quiet_end": prefs.quiet_end,
              "time_zone": prefs.time_zone}
    async with sessions() as session, session.begin():
        await session.execute(insert(preferences).values(user_id=uuid.UUID(user), **values)
                              .on_conflict_do_update(index_elements=["user_id"],
                                                     set_={**values, "updated_at": func.now()}))
    return preferences_view(prefs)


# --- jobs ---
async def create_job(sessions: async_sessionmaker[AsyncSession], by: str, text: str,
                     event_id: str | None, statuses: list[str], user_ids: list[str]
                     ) -> dict[str, Any]:
    """One announcement row per recipient, in batches, in one transaction."""
    job_id = uuid.uuid4()
    rendered = templates.render(templates.DEFAULTS["announcement"]["ru"], {"text": text})
    async with sessions() as session, session.begin():
        if event_id is not None:
            recipients = list((await session.scalars(
                select(tickets.c.user_id).where(
                    tickets.c.event_id == parse_uuid(event_id, "event"),
                    tickets.c.status.in_(statuses)).distinct())).all())
        else:
            recipients = [parse_uuid(u, "user") for u in user_ids]
        now = datetime.now(UTC)
        await session.execute(insert(jobs).values(
            id=job_id, requested_by=uuid.UUID(by),
            event_id=parse_uuid(event_id, "event") if event_id else None,
            text=text, recipients=len(recipients)))
        for start in range(0, len(recipients), 1000):
            batch = recipients[start:start + 1000]
            known = await Recipients.load_session(session, batch)
            rows = []
            for user in batch:
                _, prefs = known.get(user, ("ru", domain.Preferences()))
                verdict, until = domain.decide(prefs, "announcement", now)
                rows.append({"recipient_id": user, "template_key": "announcement",
                             "source_message_id": job_id, "job_id": job_id,
                             "event_id": parse_uuid(event_id, "event") if event_id else None,
                             "urgent": False,
                             "payload": {"type": "announcement", "text": rendered},
                             "status": "suppressed" if verdict == "suppress" else "queued",
                             "not_before": until or now})
            if rows:
                await session.execute(insert(notifications).on_conflict_do_nothing(), rows)
    return await job_view(sessions, str(job_id))


async def job_row(sessions: async_sessionmaker[AsyncSession], job_id: str) -> Any:
    async with sessions() as session:
        row = (await session.execute(select(jobs).where(
            jobs.c.id == parse_uuid(job_id, "job")))).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return row


async def job_view(sessions: async_sessionmaker[AsyncSession], job_id: str) -> dict[str, Any]:
    row = await job_row(sessions, job_id)
    async with sessions() as session:
        counts = {s: int(n) for s, n in (await session.execute(
            select(notifications.c.status, func.count())
            .where(notifications.c.job_id == row.id)
            .group_by(notifications.c.status))).all()}
    return {"id": str(row.id), "event_id": str(row.event_id) if row.event_id else None,
            "recipients": row.recipients,
            "counts": {s: counts.get(s, 0) for s in domain.STATUSES},
            "created_at": row.created_at.isoformat()}


# --- log ---
async def log_page(sessions: async_sessionmaker[AsyncSession], *, user: str | None,
                   event_ids: list[str] | None, cursor: str | None, limit: int
                   ) -> dict[str, Any]:
    """Newest first. ``user``: only theirs; ``event_ids``: only those events'; neither: all."""
    query = select(notifications)
    if user is not None:
        query = query.where(notifications.c.recipient_id == uuid.UUID(user))
    if event_ids is not None:
        query = query.where(notifications.c.event_id.in_(
            [parse_uuid(e, "event") for e in event_ids]))
    if cursor:
        after, key = paging.decode(cursor)
        try:
            after_id = int(key)
        except ValueError as exc:
            raise paging.InvalidCursor("the cursor is not one this API returned") from exc
        query = query.where(tuple_(notifications.c.created_at, notifications.c.id)
                            < tuple_(after, after_id))
    query = query.order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
    async with sessions() as session:
        rows = (await session.execute(query.limit(limit + 1))).all()
    page, more = rows[:limit], len(rows) > limit
    items = [{"id": r.id, "recipient_id": str(r.recipient_id), "template_key": r.template_key,
              "status": r.status, "attempts": r.attempts,
              "event_id": str(r.event_id) if r.event_id else None,
              "registration_id": str(r.registration_id) if r.registration_id else None,
              "telegram_message_id": r.telegram_message_id, "last_error": r.last_error,
              "created_at": r.created_at.isoformat(),
              "sent_at": r.sent_at.isoformat() if r.sent_at else None} for r in page]
    last = page[-1] if page else None
    return {"items": items,
            "next_cursor": paging.encode(last.created_at, str(last.id)) if more and last
            else None}


async def queue_depth(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with sessions() as session:
        depth, oldest = (await session.execute(
            select(func.count(), func.min(notifications.c.created_at))
            .where(notifications.c.status == "queued"))).one()
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    return {"depth": int(depth), "oldest_age_seconds": round(age, 3)}


# --- deep links ---
async def link_chat(sessions: async_sessionmaker[AsyncSession], user: str, chat_id: int,
                    language_code: str | None) -> None:
    """The chat now belongs to ``user`` (a chat was another account's: it moves)."""
    user_id = uuid.UUID(user)
    async with sessions() as session, session.begin():
        await session.execute(delete(chats).where(chats.c.chat_id == chat_id,
                                                  chats.c.user_id != user_id))
        await session.execute(insert(chats).values(
            user_id=user_id, chat_id=chat_id, language_code=language_code, user_synced=False)
            .on_conflict_do_update(index_elements=["user_id"], set_={
                "chat_id": chat_id, "language_code": language_code, "unreachable": False,
                "unreachable_reason": None, "user_synced": False, "updated_at": func.now()}))


async def sync_chats(sessions: async_sessionmaker[AsyncSession], tell: TellUser,
                     limit: int = 100) -> int:
    """Tell the User service about chats it has not heard of yet (linked, unreachable or
    reachable again); a chat changed again meanwhile stays to be told. How many were told."""
    async with sessions() as session:
        pending = (await session.execute(
            select(chats.c.user_id, chats.c.chat_id, chats.c.unreachable, chats.c.updated_at)
            .where(chats.c.user_synced.is_(False)).order_by(chats.c.updated_at)
            .limit(limit))).all()
    told = 0
    for row in pending:
        try:
            await tell(str(row.user_id), int(row.chat_id), not row.unreachable)
        except Exception as exc:
            log.warning("the User service was not told of chat %s: %s", row.chat_id, exc)
            break
        async with sessions() as session, session.begin():
            await session.execute(update(chats).where(
                chats.c.user_id == row.user_id, chats.c.updated_at == row.updated_at)
                .values(user_synced=True))
        told += 1
    return told


def telegram_link(secret: str, bot_username: str, user: str, ttl_seconds: int = 900
                  ) -> dict[str, Any]:
    expires = int(time.time()) + ttl_seconds
    token = domain.link_token(secret, user, expires)
    return {"url": f"https://t.me/{bot_username}?start={token}",
            "expires_at": datetime.fromtimestamp(expires, UTC).isoformat()}


# --- bot updates ---
class Updates:
    """What the bot does with an update from Telegram (webhook or long poll)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, release: Release,
                 reply: Reply, answer: Answer, accept_invite: AcceptInvite | None = None,
                 link_secret: str | None = None, stats: Stats | None = None,
                 chat_changed: Callable[[], None] | None = None) -> None:
        self.sessions = sessions
        self.stats = stats
        self.chat_changed = chat_changed or (lambda: None)
        self.link_secret = link_secret
        self.release = release
        self.reply = reply
        self.answer = answer
        self.accept_invite = accept_invite

    async def handle(self, update: dict[str, Any]) -> str:
        """What was done; an update seen before (Telegram redelivers) does nothing."""
        update_id = update.get("update_id")
        if update_id is None:
            raise Unprocessable("an update has an update_id", slug="invalid-update")
        async with self.sessions() as session, session.begin():
            fresh = await session.scalar(insert(updates).values(update_id=int(update_id))
                                         .on_conflict_do_nothing()
                                         .returning(updates.c.update_id))
        if fresh is None:
            return "duplicate"
        if "my_chat_member" in update:
            return await self._member(update["my_chat_member"])
        if "callback_query" in update:
            return await self._callback(update["callback_query"])
        if "message" in update:
            return await self._message(update["message"])
        return "ignored-kind"

    async def _set_reachable(self, chat_id: int, reachable: bool, reason: str | None) -> int:
        """Record a change of the chat's reachability (none: nothing written); the User
        service is told of a change."""
        async with self.sessions() as session, session.begin():
            result = await session.execute(update(chats).where(
                chats.c.chat_id == chat_id, chats.c.unreachable.is_(reachable)).values(
                unreachable=not reachable, unreachable_reason=reason, user_synced=False,
                updated_at=func.now()))
        changed = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if changed:
            self.chat_changed()
        return changed

    async def _member(self, member: dict[str, Any]) -> str:
        chat_id = int(member["chat"]["id"])
        status = (member.get("new_chat_member") or {}).get("status")
        if status in ("kicked", "left"):
            await self._set_reachable(chat_id, False, f"my_chat_member: {status}")
            return "blocked"
        if status == "member":
            await self._set_reachable(chat_id, True, None)
            return "reachable"
        return "member-other"

    async def _user_of_chat(self, chat_id: int) -> uuid.UUID | None:
        async with self.sessions() as session:
            found: uuid.UUID | None = await session.scalar(
                select(chats.c.user_id).where(chats.c.chat_id == chat_id))
            return found

    async def _callback(self, query: dict[str, Any]) -> str:
        data = str(query.get("data") or "")
        sender = int(query["from"]["id"])
        callback_id = str(query["id"])
        if not data.startswith("release:"):
            await self.answer(callback_id, "Unknown action")
            return "unknown-callback"
        registration = data.split(":", 1)[1]
        async with self.sessions() as session:
            ticket = (await session.execute(select(tickets).where(
                tickets.c.registration_id == parse_uuid(registration, "registration")))).first()
        user = await self._user_of_chat(sender)
        if ticket is None or user is None or ticket.user_id != user:
            await self.answer(callback_id, "This ticket is not yours")
            log.warning("release of %s pressed from chat %s, not its owner's", registration,
                        sender)
            return "not-owner"
        if ticket.status not in ("pending_payment", "confirmed"):
            await self.answer(callback_id, "This ticket holds no seats")
            return "nothing-to-release"
        try:
            await self.release(str(user), registration)
        except Exception as exc:
            log.warning("releasing %s failed: %s", registration, exc)
            await self.answer(callback_id, "Could not release the seat, try again")
            return "release-failed"
        await self.answer(callback_id, "Your seat is released")
        return "released"

    async def _message(self, message: dict[str, Any]) -> str:
        chat_id = int(message["chat"]["id"])
        text = str(message.get("text") or "").strip()
        await self._set_reachable(chat_id, True, None)  # they wrote to us: reachable again
        user = await self._user_of_chat(chat_id)
        if text.startswith("/start"):
            token = text[len("/start"):].strip()
            if user is not None:  # notifications on again after /stop
                async with self.sessions() as session, session.begin():
                    await session.execute(update(preferences).where(
                        preferences.c.user_id == user).values(telegram=True))
            linked = (domain.verify_link_token(self.link_secret, token, int(time.time()))
                      if token and self.link_secret else None)
            if linked is not None:
                language = (message.get("from") or {}).get("language_code")
                await link_chat(self.sessions, linked, chat_id, language)
                self.chat_changed()
                await self.reply(chat_id, "Your Afisha account is linked: tickets and "
                                          "reminders arrive here.")
                return "linked"
            if token and self.accept_invite is not None:
                try:
                    await self.accept_invite(int(message["from"]["id"]), token)
                except Exception as exc:
                    await self.reply(chat_id, f"This link does not work: {exc}"[:200])
                    return "start-refused"
                await self.reply(chat_id, "Invitation accepted.")
                return "start-accepted"
            await self.reply(chat_id, "Afisha: your tickets and reminders arrive here.")
            return "start"
        if text == "/stop":
            if user is not None:
                async with self.sessions() as session, session.begin():
                    await session.execute(insert(preferences).values(user_id=user,
                                                                     telegram=False)
                                          .on_conflict_do_update(index_elements=["user_id"],
                                                                 set_={"telegram": False}))
            await self.reply(chat_id, "Notifications are off. Tickets and receipts still "
                                      "arrive. Send /start to turn them on.")
            return "stopped"
        if text == "/stats" or text.startswith("/stats "):
            return await self._stats(chat_id, user, text[len("/stats"):].strip() or None)
        if text == "/tickets":
            if user is None:
                await self.reply(chat_id, "No Afisha account is linked to this chat.")
                return "tickets-unlinked"
            async with self.sessions() as session:
                rows = (await session.execute(
                    select(tickets.c.title, tickets.c.status, tickets.c.quantity)
                    .where(tickets.c.user_id == user,
                           tickets.c.status.in_(("confirmed", "pending_payment")))
                    .order_by(tickets.c.updated_at.desc()).limit(20))).all()
            lines = [f"• {templates.render('{{ t }}', {'t': r.title or 'Afisha'})} "
                     f"— {r.quantity} ({r.status})" for r in rows]
            await self.reply(chat_id, "\n".join(lines) or "No upcoming tickets.")
            return "tickets"
        return "message"

    async def _stats(self, chat_id: int, user: uuid.UUID | None, event_id: str | None) -> str:
        """An organizer's dashboard links; anyone else a polite refusal."""
        if user is None:
            await self.reply(chat_id, "No Afisha account is linked to this chat.")
            return "stats-unlinked"
        if self.stats is None:
            await self.reply(chat_id, "Statistics are not available right now.")
            return "stats-unavailable"
        try:
            links = await self.stats(str(user), event_id)
        except (Forbidden, NotFound, Unauthorized):
            links = []
        except Exception as exc:
            log.warning("/stats for %s failed: %s", user, exc)
            await self.reply(chat_id, "Statistics are not available right now, try again.")
            return "stats-failed"
        if not links:
            await self.reply(chat_id, STATS_REFUSED)
            return "stats-refused"
        lines = [templates.render('<a href="{{ u }}">{{ t }}</a>', {"u": url, "t": title})
                 for title, url in links]
        await self.reply(chat_id, "Dashboards (the links expire):\n" + "\n".join(lines))
        return "stats"

