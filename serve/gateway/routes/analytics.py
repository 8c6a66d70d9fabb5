"""Analytics routes: tracking (public), dashboards, reports, exports, the dashboard page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import HTMLResponse, StreamingResponse

from serve.analytics.schemas import (
    DashboardOut,
    ExportIn,
    ExportOut,
    LinkOut,
    ReportOut,
    TrackIn,
    TrackOut,
)
from serve.gateway.deps import PublicContext, ServicesDep, UserContext

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])
From = Annotated[str | None, Query(alias="from", description="ISO 8601, inclusive")]
To = Annotated[str | None, Query(description="ISO 8601, exclusive")]
Interval = Annotated[str, Query(pattern="^(hour|day)$")]


@router.post("/track", response_model=TrackOut, status_code=status.HTTP_202_ACCEPTED,
             summary="Page views, ticket views and shares (public, no cookies, ≤ 50 items)")
async def track(body: TrackIn, ctx: PublicContext, services: ServicesDep,
                user_agent: Annotated[str | None, Header()] = None) -> Any:
    return await services.analytics.track(ctx, body.items, user_agent)


@router.get("/events/{event_id}/dashboard", response_model=DashboardOut,
            summary="An event's figures from the hourly rollups (organizers, admins)")
async def dashboard(event_id: str, ctx: UserContext, services: ServicesDep,
                    start: From = None, to: To = None, interval: Interval = "day") -> Any:
    return await services.analytics.dashboard(ctx, event_id, start, to, interval)


@router.get("/events/{event_id}/dashboard/link", response_model=LinkOut,
            summary="A signed, expiring link to the event's dashboard page")
async def dashboard_link(event_id: str, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.analytics.dashboard_link(ctx, event_id)


@router.get("/pages/dashboard", response_class=HTMLResponse,
            summary="The dashboard page a signed link opens (HTML with inline SVG charts)")
async def dashboard_page(ctx: PublicContext, services: ServicesDep,
                         event_id: Annotated[str, Query()], expires: Annotated[int, Query()],
                         signature: Annotated[str, Query()], start: From = None,
                         to: To = None, interval: Interval = "day") -> HTMLResponse:
    html = await services.analytics.dashboard_page(ctx, event_id, expires, signature, start,
                                                   to, interval)
    return HTMLResponse(html, headers={
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "img-src data:"})


@router.get("/organizations/{organization_id}/report", response_model=ReportOut,
            summary="One row per event of the organization, plus totals")
async def report(organization_id: str, ctx: UserContext, services: ServicesDep,
                 start: From = None, to: To = None) -> Any:
    return await services.analytics.report(ctx, organization_id, start, to)


@router.post("/export", response_model=ExportOut, status_code=status.HTTP_202_ACCEPTED,
             summary="Start an export of rollup rows (CSV or XLSX)")
async def create_export(body: ExportIn, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.analytics.create_export(ctx, body.scope, body.id, body.format,
                                                  body.from_, body.to)


@router.get("/exports/{export_id}", response_model=ExportOut,
            summary="An export's progress; a signed download URL once done")
async def get_export(export_id: str, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.analytics.get_export(ctx, export_id)


@router.get("/exports/{export_id}/download", response_class=StreamingResponse,
            summary="The file of a finished export (signed link)")
async def download(export_id: str, ctx: PublicContext, services: ServicesDep,
                   expires: Annotated[int, Query()],
                   signature: Annotated[str, Query()]) -> StreamingResponse:
    meta = await services.analytics.export_file(ctx, export_id, expires, signature)

    async def chunks() -> AsyncIterator[bytes]:
        seq = 0
        while (chunk := await services.analytics.export_chunk(
                ctx, export_id, seq, expires, signature)) is not None:
            yield chunk
            seq += 1

    return StreamingResponse(chunks(), media_type=meta["media_type"], headers={
        "Content-Disposition": f'attachment; filename="{meta["filename"]}"',
        "Content-Length": str(meta["bytes"]), "Cache-Control": "no-store"})
