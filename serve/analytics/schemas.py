"""Pydantic models of what the analytics API takes and answers (see README: Analytics)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TrackIn(BaseModel):
    """Items are validated by the service (``serve.analytics.domain.parse_items``) so that a
    bad one is named by its index: ``{type, event_id?, path, referrer?, utm_*?, ts?}``."""

    items: list[dict[str, Any]] = Field(min_length=1, max_length=50)


class TrackOut(BaseModel):
    accepted: int
    dropped: int


class Money(BaseModel):
    currency: str
    gross: int
    refunded: int
    net: int


class Totals(BaseModel):
    model_config = ConfigDict(extra="allow")
    page_views: int
    unique_visitors: int
    reservations: int
    confirmed: int
    cancelled: int
    expired: int
    checked_in: int
    waitlist: int
    seats_left: int | None
    revenue: list[Money]


class FunnelStep(BaseModel):
    step: Literal["viewed", "reserved", "confirmed", "checked_in"]
    count: int
    conversion: float | None


class NetByCurrency(BaseModel):
    currency: str
    net: int


class SeriesPoint(BaseModel):
    model_config = ConfigDict(extra="allow")
    ts: str
    page_views: int
    reservations: int
    confirmed: int
    revenue_net: list[NetByCurrency]


class TicketTypeFigures(BaseModel):
    model_config = ConfigDict(extra="allow")
    ticket_type_id: str
    name: str | None
    reservations: int
    confirmed: int
    cancelled: int
    expired: int
    checked_in: int
    revenue: list[Money]


class DayRevenue(BaseModel):
    day: str
    revenue: list[Money]


class DashboardOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    event_id: str
    from_: str = Field(alias="from")
    to: str
    interval: str
    totals: Totals
    funnel: list[FunnelStep]
    attendance_rate: float | None
    sales_velocity_per_day: float | None
    series: list[SeriesPoint]
    by_ticket_type: list[TicketTypeFigures]
    revenue_by_day: list[DayRevenue]


class ReportRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    event_id: str
    title: str
    page_views: int
    unique_visitors: int
    reservations: int
    confirmed: int
    cancelled: int
    expired: int
    checked_in: int
    attendance_rate: float | None
    revenue: list[Money]


class ReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    organization_id: str
    from_: str = Field(alias="from")
    to: str
    events: list[ReportRow]
    totals: dict[str, Any]


class ExportIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    scope: Literal["event", "organization"]
    id: str
    format: Literal["csv", "xlsx"] = "csv"
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class ExportOut(BaseModel):
    id: str
    scope: str
    scope_id: str
    format: str
    status: Literal["queued", "running", "done", "failed"]
    rows_written: int
    rows_total: int | None
    bytes: int
    error: str | None
    download_url: str | None
    expires_at: str | None


class LinkOut(BaseModel):
    url: str
    expires_at: str
