"""Serve deployment of the media service: typed async methods other deployments call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ray.serve.handle import DeploymentHandle

from messaging.catalogue import CONSUMES
from messaging.consumer import Handler
from serve.common.clients import ServiceClient
from serve.common.context import RequestContext, bound
from serve.common.service import ServiceBase, in_serve_replica
from serve.media.handlers import on_event_changed
from serve.media.service import MediaUseCases
from serve.users.client import UserClient
from storage.objects import ObjectStore, store_for


class MediaService(ServiceBase):
    service = "media"

    def __init__(self, config: dict[str, Any], user: DeploymentHandle | Any = None,
                 store: ObjectStore | None = None) -> None:
        super().__init__(config)
        if isinstance(user, UserClient):
            users = user
        else:
            users = UserClient(ServiceClient("user", user,
                                             self.settings.service_call_timeout_seconds))
        self.store = store or store_for(self.settings)
        self.media = MediaUseCases(self.settings, self.sessions, self.store, users)
        self._started: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        if in_serve_replica():
            loop = asyncio.get_running_loop()
            self._started = loop.create_task(self.store.start())
            self._sweeper = loop.create_task(self.sweep_forever())

    def message_handlers(self) -> dict[str, Handler]:
        return dict.fromkeys(CONSUMES["media"], on_event_changed)

    async def ready(self) -> None:
        """The store is started (bucket made) and, in a replica, the cleanup sweep runs."""
        loop = asyncio.get_running_loop()
        if self._started is None:
            self._started = loop.create_task(self.store.start())
        if self._sweeper is None and in_serve_replica():
            self._sweeper = loop.create_task(self.sweep_forever())
        await self._started

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.media_sweep_seconds)
            try:
                counts = await self.media.sweep()
                if any(counts.values()):
                    self.log.info("media sweep removed %s", counts)
            except Exception:
                self.log.exception("media sweep failed")

    # --- public API (called by the gateway) ---
    async def upload(self, ctx: RequestContext, purpose: str, organization_id: str | None,
                     file_name: str | None, declared: str | None,
                     data: bytes) -> dict[str, Any]:
        with bound(ctx):
            await self.ready()
            return await self.media.upload(ctx, purpose, organization_id, file_name,
                                           declared, data)

    async def get_media(self, ctx: RequestContext, media_id: str) -> dict[str, Any]:
        with bound(ctx):
            await self.ready()
            return await self.media.get(ctx, media_id)

    async def media_url(self, ctx: RequestContext, media_id: str, variant: str,
                        expires_in: int) -> dict[str, Any]:
        with bound(ctx):
            return await self.media.url(ctx, media_id, variant, expires_in)

    async def delete_media(self, ctx: RequestContext, media_id: str) -> None:
        with bound(ctx):
            await self.media.delete(ctx, media_id)

    # --- questions from the Event service ---
    async def attach_cover(self, ctx: RequestContext, media_id: str, event_id: str,
                           organization_id: str) -> dict[str, Any]:
        with bound(ctx):
            return await self.media.attach_cover(ctx, media_id, event_id, organization_id)

    async def detach_cover(self, ctx: RequestContext, media_id: str, event_id: str) -> None:
        with bound(ctx):
            await self.media.detach_cover(ctx, media_id, event_id)

    async def cover_urls(self, ctx: RequestContext, media_ids: list[str],
                         expires_in: int) -> dict[str, dict[str, str]]:
        with bound(ctx):
            return await self.media.variant_urls(ctx, media_ids, expires_in)

    async def sweep(self, ctx: RequestContext) -> dict[str, int]:
        with bound(ctx):
            return await self.media.sweep()

    def dependency_checks(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        checks = super().dependency_checks()

        async def object_store() -> dict[str, Any]:
            return dict(await self.store.health())

        checks["object_store"] = object_store
        return checks

    async def close(self) -> None:
        for task in (self._sweeper,):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self.media.settle()
        await super().close()
