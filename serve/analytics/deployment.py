"""Serve deployment of the analytics service: typed async methods other deployments call."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from ray.serve.handle import DeploymentHandle

from cluster.settings import reveal
from messaging.catalogue import CONSUMES
from messaging.consumer import Handler
from messaging.outbox import UnitOfWork
from serve.analytics import domain, export_jobs, page, service
from serve.analytics.tracking import record_domain_event
from serve.common.clients import Caller, ServiceClient
from serve.common.context import RequestContext, bound
from serve.common.errors import BadRequest, Forbidden, NotFound, ProblemError, Unauthorized
from serve.common.service import ServiceBase, in_serve_replica
from serve.events.client import EventClient
from serve.events.domain import MANAGER_ROLES
from serve.users.client import UserClient

INTERVALS = ("hour", "day")
FORMATS = ("csv", "xlsx")
SCOPES = ("event", "organization")


def _caller(name: str, handle: Any, timeout: float) -> Caller:
    if isinstance(handle, DeploymentHandle):
        return ServiceClient(name, handle, timeout)
    caller: Caller = handle
    return caller


class AnalyticsService(ServiceBase):
    service = "analytics"

    def __init__(self, config: dict[str, Any], event: DeploymentHandle | Caller,
                 user: DeploymentHandle | Caller) -> None:
        super().__init__(config)
        timeout = self.settings.service_call_timeout_seconds
        self.event = EventClient(_caller("event", event, timeout))
        self.user = UserClient(_caller("user", user, timeout))
        settings = self.settings
        secret = (reveal(settings.analytics_signing_secret) or reveal(settings.jwt_secret)
                  or reveal(settings.sandbox_webhook_secret) or "")
        self.secret = hashlib.sha256(b"afisha-analytics-links\x00" + secret.encode()).digest()
        self.exports: set[asyncio.Task[None]] = set()
        self.sweeper: asyncio.Task[None] | None = None
        self.resumer: asyncio.Task[None] | None = None
        if in_serve_replica():
            loop = asyncio.get_running_loop()
            self.sweeper = loop.create_task(self._sweep_forever())
            self.resumer = loop.create_task(self._resume_exports_forever())

    def message_handlers(self) -> dict[str, Handler]:
        return dict.fromkeys(CONSUMES["analytics"], record_domain_event)

    # --- tracking ---
    async def track(self, ctx: RequestContext, items: Any, user_agent: str | None
                    ) -> dict[str, int]:
        """Public: page views, ticket views and shares (validated whole, robots dropped)."""
        with bound(ctx):
            async with UnitOfWork(self.sessions, self.service) as uow:
                return await service.track(uow, items, ctx.client_ip, user_agent,
                                           datetime.now(UTC))

    # --- dashboards ---
    async def dashboard(self, ctx: RequestContext, event_id: str, start: str | None,
                        end: str | None, interval: str) -> dict[str, Any]:
        with bound(ctx):
            event_id = event_id.lower()
            await self._require_event_reader(ctx, event_id)
            return await self._dashboard(ctx, event_id, start, end, interval)

    async def _dashboard(self, ctx: RequestContext, event_id: str, start: str | None,
                         end: str | None, interval: str) -> dict[str, Any]:
        if interval not in INTERVALS:
            raise BadRequest("interval is hour or day", slug="invalid-range")
        rng = service.parse_range(start, end, datetime.now(UTC))
        seats_left, names = await self._ticket_types(ctx, event_id)
        async with self.sessions() as session:
            return await service.dashboard(session, event_id, rng, interval, seats_left, names)

    async def _ticket_types(self, ctx: RequestContext, event_id: str
                            ) -> tuple[int | None, dict[str, str]]:
        """Seats left now and ticket type names, from the event service's inventory (None
        when it does not answer: the dashboard still shows every figure of its own)."""
        try:
            view = await self.event.seats_left(ctx, event_id)
        except ProblemError as exc:
            self.log.warning("seats of %s unavailable: %s", event_id, exc.detail)
            return None, {}
        names = {str(t["id"]).lower(): str(t["name"]) for t in view["ticket_types"]}
        return int(view["seats_left"]), names

    async def report(self, ctx: RequestContext, organization_id: str, start: str | None,
                     end: str | None) -> dict[str, Any]:
        with bound(ctx):
            organization_id = organization_id.lower()
            await self._require_organization_reader(ctx, organization_id)
            rng = service.parse_range(start, end, datetime.now(UTC))
            async with self.sessions() as session:
                return await service.report(session, organization_id, rng)

    # --- the dashboard page ---
    async def dashboard_link(self, ctx: RequestContext, event_id: str) -> dict[str, Any]:
        with bound(ctx):
            event_id = event_id.lower()
            await self._require_event_reader(ctx, event_id)
            expires = int(time.time()) + self.settings.analytics_link_ttl_seconds
            signature = domain.sign(self.secret, "dashboard", event_id, str(expires))
            query = urlencode({"event_id": event_id, "expires": expires,
                               "signature": signature})
            return {"url": f"{self.settings.api_base_url}/api/v1/analytics/pages/dashboard?"
                           f"{query}",
                    "expires_at": datetime.fromtimestamp(expires, UTC).isoformat()}

    async def dashboard_page(self, ctx: RequestContext, event_id: str, expires: int,
                             signature: str, start: str | None, end: str | None,
                             interval: str) -> str:
        with bound(ctx):
            if not domain.signature_ok(self.secret, signature, expires, time.time(),
                                       "dashboard", event_id):
                raise Forbidden("this link is not valid (expired or altered)",
                                slug="invalid-signature")
            body = await self._dashboard(ctx, event_id, start, end, interval)
            async with self.sessions() as session:
                title = await service.event_title(session, event_id)
            return page.render(body, title or event_id)

    # --- exports ---
    async def create_export(self, ctx: RequestContext, scope: str, scope_id: str, fmt: str,
                            start: str | None, end: str | None) -> dict[str, Any]:
        with bound(ctx):
            scope_id = scope_id.lower()
            if scope not in SCOPES:
                raise BadRequest("scope is event or organization")
            if fmt not in FORMATS:
                raise BadRequest("format is csv or xlsx")
            if scope == "event":
                await self._require_event_reader(ctx, scope_id)
            else:
                await self._require_organization_reader(ctx, scope_id)
            rng = service.parse_range(start, end, datetime.now(UTC))
            assert ctx.identity is not None
            async with self.sessions() as session, session.begin():
                job = await export_jobs.create_export(session, ctx.identity.user_id, scope,
                                                  scope_id, fmt, rng)
            task = asyncio.get_running_loop().create_task(self._run_export(job["id"]))
            self.exports.add(task)
            task.add_done_callback(self.exports.discard)
            return await self.get_export(ctx, job["id"])

    async def _run_export(self, export_id: str) -> None:
        try:
            await export_jobs.run_export(
                self.sessions, export_id,
                stale_seconds=self.settings.analytics_export_stale_seconds)
        except Exception:
            self.log.exception("export %s failed", export_id)

    async def get_export(self, ctx: RequestContext, export_id: str) -> dict[str, Any]:
        with bound(ctx):
            async with self.sessions() as session:
                job = await export_jobs.load_export(session, export_id)
            if job["scope"] == "event":
                await self._require_event_reader(ctx, job["scope_id"])
            else:
                await self._require_organization_reader(ctx, job["scope_id"])
            out: dict[str, Any] = {
                "id": str(job["id"]), "scope": job["scope"], "scope_id": job["scope_id"],
                "format": job["format"], "status": job["status"],
                "rows_written": job["rows_written"], "rows_total": job["rows_total"],
                "bytes": job["bytes_written"], "error": job["error"], "download_url": None,
                "expires_at": None}
            if job["status"] == "done":
                expires = int(time.time()) + self.settings.analytics_link_ttl_seconds
                sig = domain.sign(self.secret, "export", str(job["id"]), str(expires))
                out["download_url"] = (
                    f"{self.settings.api_base_url}/api/v1/analytics/exports/{job['id']}/"
                    f"download?{urlencode({'expires': expires, 'signature': sig})}")
                out["expires_at"] = datetime.fromtimestamp(expires, UTC).isoformat()
            return out

    async def export_file(self, ctx: RequestContext, export_id: str, expires: int,
                          signature: str) -> dict[str, Any]:
        """What a signed download link names: file name and media type (no content)."""
        with bound(ctx):
            if not domain.signature_ok(self.secret, signature, expires, time.time(),
                                       "export", export_id):
                raise Forbidden("this link is not valid (expired or altered)",
                                slug="invalid-signature")
            async with self.sessions() as session:
                job = await export_jobs.load_export(session, export_id)
            if job["status"] != "done":
                raise NotFound("this export is not ready")
            media = ("text/csv; charset=utf-8" if job["format"] == "csv" else
                     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
            return {"filename": f"afisha-{job['scope']}-{job['scope_id']}.{job['format']}",
                    "media_type": media, "bytes": job["bytes_written"]}

    async def export_chunk(self, ctx: RequestContext, export_id: str, seq: int, expires: int,
                           signature: str) -> bytes | None:
        """One chunk of a finished export's file (None after the last)."""
        with bound(ctx):
            if not domain.signature_ok(self.secret, signature, expires, time.time(),
                                       "export", export_id):
                raise Forbidden("this link is not valid (expired or altered)",
                                slug="invalid-signature")
            async with self.sessions() as session:
                return await export_jobs.read_chunk(session, export_id, seq)

    # --- authorization ---
    async def _require_event_reader(self, ctx: RequestContext, event_id: str) -> None:
        if ctx.identity is None:
            raise Unauthorized("sign in first")
        if ctx.identity.is_admin:
            return
        async with self.sessions() as session:
            organization = await service.event_organization(session, event_id)
        if organization is not None:
            allowed = await self._manages(ctx, organization)
        else:  # not heard of yet: ask the event service
            allowed = await self.event.can_manage_event(ctx, event_id)
        if not allowed:
            raise Forbidden("only the event's organizers and admins see its analytics")

    async def _require_organization_reader(self, ctx: RequestContext,
                                           organization_id: str) -> None:
        if ctx.identity is None:
            raise Unauthorized("sign in first")
        if ctx.identity.is_admin:
            return
        if not await self._manages(ctx, organization_id):
            raise Forbidden("only the organization's organizers and admins see its analytics")

    async def _manages(self, ctx: RequestContext, organization_id: str) -> bool:
        assert ctx.identity is not None
        role = await self.user.organization_role(ctx, ctx.identity.user_id, organization_id)
        return role in MANAGER_ROLES

    # --- housekeeping ---
    async def sweep(self) -> list[str]:
        """Partitions of the coming months; salts older than 48 hours forgotten."""
        now = datetime.now(UTC)
        async with self.sessions() as session, session.begin():
            made = await service.ensure_partitions(
                session, self.schema, now.date(), self.settings.analytics_partitions_ahead_months)
            await service.forget_old_salts(session, now)
        return made

    async def _sweep_forever(self) -> None:
        while True:
            try:
                made = await self.sweep()
                if made:
                    self.log.info("created partitions %s", ", ".join(made))
            except Exception:
                self.log.exception("analytics sweep failed; retrying on the next round")
            await asyncio.sleep(self.settings.analytics_sweep_seconds)

    async def _resume_exports_forever(self) -> None:
        """Take over the exports of workers that died (every half of the stale time)."""
        stale = self.settings.analytics_export_stale_seconds
        while True:
            await asyncio.sleep(stale / 2)
            try:
                await export_jobs.resume_stale(self.sessions, stale)
            except Exception:
                self.log.exception("resuming stale exports failed; retrying on the next round")

    async def close(self) -> None:
        for task in (self.sweeper, self.resumer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for task in list(self.exports):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().close()
