"""Serve deployment of the notification service: typed async methods other deployments call."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from ray.serve.handle import DeploymentHandle
from sqlalchemy import func, select

from cluster.settings import reveal
from messaging.consumer import Handler
from serve.analytics.client import AnalyticsClient
from serve.common.clients import ServiceClient
from serve.common.context import Identity, RequestContext, bound, correlation_id_var
from serve.common.errors import Forbidden, ServiceUnavailable, Unauthorized
from serve.common.service import ServiceBase
from serve.events.client import EventClient
from serve.notifications import domain, service
from serve.notifications.domain import Limits
from serve.notifications.handlers import NotificationHandlers
from serve.notifications.limiter import Limiter, LocalLimiter, RedisLimiter, wait_for_slot
from serve.notifications.sender import Sender
from serve.notifications.stats import StatsLinks
from serve.notifications.telegram import BotGateway
from serve.users.client import UserClient

WEBHOOK_PATH = "/api/v1/telegram/webhook"


def webhook_secret(token: str, configured: str | None) -> str:
    """The ``secret_token`` of setWebhook: configured, or derived from the bot token."""
    if configured:
        return configured
    return hashlib.sha256(b"afisha-telegram-webhook:" + token.encode()).hexdigest()[:64]


class NotificationService(ServiceBase):
    service = "notification"

    def __init__(self, config: dict[str, Any], user: DeploymentHandle,
                 event: DeploymentHandle, analytics: DeploymentHandle | None = None) -> None:
        super().__init__(config)
        timeout = self.settings.service_call_timeout_seconds
        self.user = UserClient(ServiceClient("user", user, timeout))
        self.event = EventClient(ServiceClient("event", event, timeout))
        self.analytics = (AnalyticsClient(ServiceClient("analytics", analytics, timeout))
                          if analytics is not None else None)
        settings = self.settings
        limits = Limits(per_second=settings.telegram_max_per_second)
        self.limiter: Limiter = (
            RedisLimiter(str(settings.redis_url), settings.redis_key_prefix, limits)
            if settings.redis_url else LocalLimiter(limits))
        token = reveal(settings.telegram_bot_token)
        self.bot = BotGateway(token, settings.telegram_api_url) if token else None
        self.secret = (webhook_secret(token, reveal(settings.telegram_webhook_secret))
                       if token else None)
        self.link_secret = (reveal(settings.jwt_secret) or reveal(settings.jwt_private_key)
                            or token)
        self.sender = Sender(self.sessions, settings, self.bot, self.limiter,
                             resolve_chat=self._chat_of)
        self._chats_changed = asyncio.Event()
        stats = StatsLinks(self.user, self.analytics) if self.analytics is not None else None
        self.updates = service.Updates(self.sessions, release=self._release, reply=self._reply,
                                       answer=self._answer, accept_invite=self._accept_invite,
                                       link_secret=self.link_secret,
                                       stats=stats.links if stats is not None else None,
                                       chat_changed=self._chats_changed.set)
        self._tasks: list[asyncio.Task[None]] = []

    # --- wiring ---
    def message_handlers(self) -> dict[str, Handler]:
        return NotificationHandlers(self._event_details, self._chat_of,
                                    render_without_chat=self.bot is None).handlers()

    def start_messaging(self) -> None:
        super().start_messaging()
        if self._tasks:
            return
        self.sender.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._updates_loop()))
        self._tasks.append(loop.create_task(self._sync_loop()))

    def _system(self) -> RequestContext:
        return RequestContext(correlation_id_var.get())

    async def _event_details(self, event_id: str) -> dict[str, Any] | None:
        return await self.event.event_for_service(self._system(), event_id)

    async def _chat_of(self, user_id: uuid.UUID) -> int | None:
        return await self.user.telegram_chat_id(self._system(), str(user_id))

    async def _tell_user(self, user_id: str, chat_id: int, reachable: bool) -> bool:
        return await self.user.telegram_chat_changed(self._system(), user_id, chat_id,
                                                     reachable)

    async def _sync_loop(self) -> None:
        """Tell the User service of linked, unreachable and reachable chats: at once when the
        bot sees a change, otherwise every minute (changes the sender saw, retries)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._chats_changed.wait(), 60)
            self._chats_changed.clear()
            try:
                await service.sync_chats(self.sessions, self._tell_user)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("telling the User service of chats failed: %s", exc)

    async def _release(self, user_id: str, registration_id: str) -> None:
        ctx = RequestContext(correlation_id_var.get(), Identity(user_id))
        await self.event.cancel_registration(ctx, registration_id)

    async def _reply(self, chat_id: int, text: str) -> None:
        if self.bot is None:
            self.log.info("telegram (not configured) reply to %s: %s", chat_id, text)
            return
        await wait_for_slot(self.limiter, chat_id)
        await self.bot.send_text(chat_id, text, None)

    async def _answer(self, callback_id: str, text: str) -> None:
        if self.bot is not None:
            await self.bot.answer_callback(callback_id, text)

    async def _accept_invite(self, telegram_id: int, token: str) -> Any:
        return await self.user.accept_invite_from_telegram(self._system(), telegram_id, token)

    async def _updates_loop(self) -> None:
        """Webhook when AFISHA_PUBLIC_URL is https, else one replica long-polls getUpdates
        (the poller holds an advisory lock: a second getUpdates would be a 409)."""
        if self.bot is None or self.secret is None:
            return
        base = (self.settings.public_url or "").rstrip("/")
        if base.startswith("https://"):
            try:
                await self.bot.set_webhook(base + WEBHOOK_PATH, self.secret)
                self.log.info("telegram webhook set at %s%s", base, WEBHOOK_PATH)
            except Exception as exc:
                self.log.warning("setWebhook failed: %s", exc)
            return
        key = zlib.crc32(b"afisha-telegram-poller")
        offset: int | None = None
        while True:
            try:
                async with self.engine.connect() as conn:
                    if not await conn.scalar(select(func.pg_try_advisory_lock(key))):
                        await asyncio.sleep(5)
                        continue
                    try:
                        while True:
                            got = await self.bot.get_updates(offset, 20)
                            for update in got:
                                offset = int(update["update_id"]) + 1
                                with contextlib.suppress(Exception):
                                    await self.updates.handle(update)
                    finally:
                        await conn.scalar(select(func.pg_advisory_unlock(key)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("getUpdates failed: %s", exc)
                await asyncio.sleep(2)

    # --- public API (called by the gateway) ---
    async def list_templates(self, ctx: RequestContext) -> dict[str, Any]:
        with bound(ctx):
            return {"items": await service.list_templates(self.sessions)}

    async def put_template(self, ctx: RequestContext, key: str, locale: str,
                           body: str) -> dict[str, Any]:
        with bound(ctx):
            who = _identity(ctx)
            if not who.is_admin:
                raise Forbidden("only administrators change templates")
            return await service.put_template(self.sessions, key, locale, body, who.user_id)

    async def telegram_link(self, ctx: RequestContext) -> dict[str, Any]:
        """A deep link that links the caller's account to the chat that opens it."""
        with bound(ctx):
            if not self.link_secret:
                raise ServiceUnavailable("Telegram links need AFISHA_JWT_SECRET or a bot token",
                                         slug="telegram-not-configured")
            return service.telegram_link(self.link_secret, self.settings.telegram_bot_username,
                                         _identity(ctx).user_id)

    async def get_preferences(self, ctx: RequestContext) -> dict[str, Any]:
        with bound(ctx):
            return await service.get_preferences(self.sessions, _identity(ctx).user_id)

    async def put_preferences(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        with bound(ctx):
            prefs = domain.Preferences(
                telegram=bool(body.get("telegram", True)),
                opt_out=tuple(body.get("opt_out") or ()), quiet_start=body.get("quiet_start"),
                quiet_end=body.get("quiet_end"), time_zone=body.get("time_zone") or "UTC")
            return await service.put_preferences(self.sessions, _identity(ctx).user_id, prefs)

    async def _organizes(self, ctx: RequestContext, event_id: str) -> bool:
        who = _identity(ctx)
        if who.is_admin:
            return True
        event = await self.event.event_for_service(ctx, event_id)
        if event is None:
            return False
        role = await self.user.organization_role(ctx, who.user_id,
                                                 str(event["organization_id"]))
        return role in ("owner", "moderator")

    async def send(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        """Organizers to their event's registrants (by status); admins to users too."""
        with bound(ctx):
            who = _identity(ctx)
            event_id = body.get("event_id")
            if event_id:
                if not await self._organizes(ctx, event_id):
                    raise Forbidden("only the event's organizers send to its registrants")
            elif not who.is_admin:
                raise Forbidden("only administrators send to users")
            job = await service.create_job(self.sessions, who.user_id, body["text"], event_id,
                                           list(body.get("statuses") or []),
                                           list(body.get("user_ids") or []))
            self.sender.wake()
            return job

    async def get_job(self, ctx: RequestContext, job_id: str) -> dict[str, Any]:
        with bound(ctx):
            who = _identity(ctx)
            row = await service.job_row(self.sessions, job_id)
            if not who.is_admin and str(row.requested_by) != who.user_id:
                raise Forbidden("only who sent a job sees it")
            return await service.job_view(self.sessions, job_id)

    async def notification_log(self, ctx: RequestContext, event_id: str | None,
                               cursor: str | None, limit: int) -> dict[str, Any]:
        """A user's own; an organizer's for their event; admins' for all."""
        with bound(ctx):
            who = _identity(ctx)
            if event_id is not None:
                if not await self._organizes(ctx, event_id):
                    raise Forbidden("only the event's organizers see its notifications")
                return await service.log_page(self.sessions, user=None, event_ids=[event_id],
                                              cursor=cursor, limit=limit)
            return await service.log_page(self.sessions,
                                          user=None if who.is_admin else who.user_id,
                                          event_ids=None, cursor=cursor, limit=limit)

    async def telegram_update(self, ctx: RequestContext, secret: str | None,
                              update: dict[str, Any]) -> dict[str, Any]:
        """A webhook call: refused without the right X-Telegram-Bot-Api-Secret-Token."""
        with bound(ctx):
            import hmac

            given = (secret or "").encode("utf-8", "surrogatepass")  # any header text compares
            wanted = (self.secret or "").encode("utf-8", "surrogatepass")
            if self.secret is None or not hmac.compare_digest(given, wanted):
                raise Unauthorized("wrong or missing X-Telegram-Bot-Api-Secret-Token",
                                   slug="invalid-webhook-secret")
            await self.updates.handle(update)
            return {"ok": True}

    def dependency_checks(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        checks = super().dependency_checks()

        async def queue() -> dict[str, Any]:
            return {**await service.queue_depth(self.sessions),
                    "sender": {"sent": self.sender.stats.sent,
                               "logged": self.sender.stats.logged,
                               "failed": self.sender.stats.failed,
                               "blocked": self.sender.stats.blocked,
                               "retried_after_429": self.sender.stats.retried_after}}

        checks["queue"] = queue
        if self.bot is not None:
            bot = self.bot
            checks["telegram"] = bot.me
        return checks

    async def messaging_status(self, ctx: RequestContext) -> dict[str, Any]:
        """Messaging as every service reports it, with the send queue's depth and age."""
        body = await super().messaging_status(ctx)
        with bound(ctx):
            body["notifications"] = await service.queue_depth(self.sessions)
        return body

    async def queue_status(self, ctx: RequestContext) -> dict[str, Any]:
        with bound(ctx):
            return await service.queue_depth(self.sessions)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.sender.close()
        if self.bot is not None:
            await self.bot.close()
        if isinstance(self.limiter, RedisLimiter):
            await self.limiter.close()
        await super().close()


def _identity(ctx: RequestContext) -> Identity:
    if ctx.identity is None:
        raise Unauthorized("sign in first")
    return ctx.identity
