"""Typed client of the notification service (``serve.notifications.deployment``)."""

from __future__ import annotations

from typing import Any, cast

from serve.common.clients import ClientBase
from serve.common.context import RequestContext

View = dict[str, Any]


class NotificationClient(ClientBase):
    async def _view(self, method: str, *args: Any) -> View:
        return cast(View, await self.transport.call(method, *args))

    async def list_templates(self, ctx: RequestContext) -> View:
        return await self._view("list_templates", ctx)

    async def put_template(self, ctx: RequestContext, key: str, locale: str, body: str) -> View:
        return await self._view("put_template", ctx, key, locale, body)

    async def get_preferences(self, ctx: RequestContext) -> View:
        return await self._view("get_preferences", ctx)

    async def put_preferences(self, ctx: RequestContext, body: View) -> View:
        return await self._view("put_preferences", ctx, body)

    async def send(self, ctx: RequestContext, body: View) -> View:
        return await self._view("send", ctx, body)

    async def get_job(self, ctx: RequestContext, job_id: str) -> View:
        return await self._view("get_job", ctx, job_id)

    async def notification_log(self, ctx: RequestContext, event_id: str | None,
                               cursor: str | None, limit: int) -> View:
        return await self._view("notification_log", ctx, event_id, cursor, limit)

    async def telegram_update(self, ctx: RequestContext, secret: str | None,
                              update: View) -> View:
        return await self._view("telegram_update", ctx, secret, update)

    async def queue_status(self, ctx: RequestContext) -> View:
        return await self._view("queue_status", ctx)

    async def telegram_link(self, ctx: RequestContext) -> View:
        return await self._view("telegram_link", ctx)
