"""Typed client of the analytics service (``serve.analytics.deployment.AnalyticsService``)."""

from __future__ import annotations

from typing import Any, cast

from serve.common.clients import ClientBase
from serve.common.context import RequestContext

View = dict[str, Any]


class AnalyticsClient(ClientBase):
    async def track(self, ctx: RequestContext, items: Any, user_agent: str | None) -> View:
        return cast(View, await self.transport.call("track", ctx, items, user_agent))

    async def dashboard(self, ctx: RequestContext, event_id: str, start: str | None,
                        end: str | None, interval: str) -> View:
        return cast(View, await self.transport.call("dashboard", ctx, event_id, start, end,
                                                    interval))

    async def report(self, ctx: RequestContext, organization_id: str, start: str | None,
                     end: str | None) -> View:
        return cast(View, await self.transport.call("report", ctx, organization_id, start,
                                                    end))

    async def dashboard_link(self, ctx: RequestContext, event_id: str) -> View:
        return cast(View, await self.transport.call("dashboard_link", ctx, event_id))

    async def dashboard_page(self, ctx: RequestContext, event_id: str, expires: int,
                             signature: str, start: str | None, end: str | None,
                             interval: str) -> str:
        return cast(str, await self.transport.call("dashboard_page", ctx, event_id, expires,
                                                   signature, start, end, interval))

    async def create_export(self, ctx: RequestContext, scope: str, scope_id: str, fmt: str,
                            start: str | None, end: str | None) -> View:
        return cast(View, await self.transport.call("create_export", ctx, scope, scope_id, fmt,
                                                    start, end))

    async def get_export(self, ctx: RequestContext, export_id: str) -> View:
        return cast(View, await self.transport.call("get_export", ctx, export_id))

    async def export_file(self, ctx: RequestContext, export_id: str, expires: int,
                          signature: str) -> View:
        return cast(View, await self.transport.call("export_file", ctx, export_id, expires,
                                                    signature))

    async def export_chunk(self, ctx: RequestContext, export_id: str, seq: int, expires: int,
                           signature: str) -> bytes | None:
        return cast(bytes | None, await self.transport.call(
            "export_chunk", ctx, export_id, seq, expires, signature))
