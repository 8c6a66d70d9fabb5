"""What the media API answers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class VariantOut(BaseModel):
    width: int
    height: int
    bytes: int
    content_type: str


class MediaOut(BaseModel):
    id: str
    purpose: Literal["event_cover", "avatar", "document"]
    organization_id: str | None = None
    uploader_id: str
    status: Literal["processing", "ready", "failed"]
    failure_reason: str | None = None
    content_type: str
    bytes: int
    width: int | None = None
    height: int | None = None
    file_name: str | None = None
    variants: dict[Literal["thumb", "card", "cover"], VariantOut] = {}
    created_at: datetime


class MediaUrlOut(BaseModel):
    url: str
    expires_at: datetime
