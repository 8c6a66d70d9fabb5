"""Request bodies of the event endpoints (responses are the plain dicts of ``views``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Amount = Annotated[int, Field(strict=True, ge=0, le=10**12)]
Count = Annotated[int, Field(strict=True, ge=1, le=1_000_000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Money(Body):
    amount: Amount
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class EventIn(Body):
    organization_id: Annotated[str, Field(min_length=1, max_length=64)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=20_000)] = ""
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    venue: Annotated[str, Field(max_length=500)] = ""
    visibility: Literal["public", "group"] = "public"
    group_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    participants_visibility: Literal["open", "closed"] = "open"
    cover_media_id: Annotated[str, Field(max_length=64)] | None = None


class EventUpdate(Body):
    title: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=20_000)] | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    venue: Annotated[str, Field(max_length=500)] | None = None
    participants_visibility: Literal["open", "closed"] | None = None
    cover_media_id: Annotated[str, Field(max_length=64)] | None = None


class TicketTypeIn(Body):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    price: Money
    quantity: Count
    per_user_limit: Count | None = None
    prepayment_amount: Amount | None = None
    sales_start: AwareDatetime | None = None
    sales_end: AwareDatetime | None = None


class RegistrationIn(Body):
    ticket_type_id: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(strict=True, ge=1, le=100)] = 1
    payment_mode: Literal["full", "prepayment"] = "full"


class CheckInIn(Body):
    ticket_code: Annotated[str, Field(min_length=1, max_length=4096)]


class WaitlistIn(Body):
    ticket_type_id: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(strict=True, ge=1, le=100)] = 1


class EventFilters(Body):
    organization_id: str | None = None
    status: Literal["draft", "published", "cancelled", "completed"] | None = None
    starts_after: datetime | None = None
    starts_before: datetime | None = None
    q: Annotated[str, Field(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: str | None = None
