"""Typed client of the media service (``serve.media.deployment.MediaService``)."""

from __future__ import annotations

from typing import Any, cast

from serve.common.clients import ClientBase
from serve.common.context import RequestContext

View = dict[str, Any]


class MediaClient(ClientBase):
    async def upload(self, ctx: RequestContext, purpose: str, organization_id: str | None,
                     file_name: str | None, declared: str | None, data: bytes) -> View:
        return cast(View, await self.transport.call(
            "upload", ctx, purpose, organization_id, file_name, declared, data))

    async def get_media(self, ctx: RequestContext, media_id: str) -> View:
        return cast(View, await self.transport.call("get_media", ctx, media_id))

    async def media_url(self, ctx: RequestContext, media_id: str, variant: str,
                        expires_in: int) -> View:
        return cast(View, await self.transport.call(
            "media_url", ctx, media_id, variant, expires_in))

    async def delete_media(self, ctx: RequestContext, media_id: str) -> None:
        await self.transport.call("delete_media", ctx, media_id)

    async def attach_cover(self, ctx: RequestContext, media_id: str, event_id: str,
                           organization_id: str) -> View:
        """Validate a medium as the event's cover (exists, ready, image, same organization)
        and mark it attached; an invalid one is 422 ``invalid-cover``."""
        return cast(View, await self.transport.call(
            "attach_cover", ctx, media_id, event_id, organization_id))

    async def detach_cover(self, ctx: RequestContext, media_id: str, event_id: str) -> None:
        await self.transport.call("detach_cover", ctx, media_id, event_id)

    async def cover_urls(self, ctx: RequestContext, media_ids: list[str],
                         expires_in: int) -> dict[str, dict[str, str]]:
        """media id -> {thumb|card|cover: URL} of the ready images among ``media_ids``."""
        return cast(dict[str, dict[str, str]], await self.transport.call(
            "cover_urls", ctx, media_ids, expires_in))

    async def sweep(self, ctx: RequestContext) -> View:
        return cast(View, await self.transport.call("sweep", ctx))
