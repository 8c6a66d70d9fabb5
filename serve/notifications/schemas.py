"""What the notification API takes and answers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TemplateOut(BaseModel):
    key: str
    locale: str
    body: str
    customized: bool


class TemplateList(BaseModel):
    items: list[TemplateOut]


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    locale: Literal["ru", "en"] = "ru"
    body: str = Field(min_length=1, max_length=4096)


class PreferencesIO(BaseModel):
    model_config = ConfigDict(extra="forbid")
    telegram: bool = True
    opt_out: list[str] = Field(default_factory=list)
    quiet_start: str | None = Field(default=None, examples=["22:00"])
    quiet_end: str | None = Field(default=None, examples=["08:00"])
    time_zone: str = "UTC"
    never_suppressed: list[str] = Field(default_factory=list)


class SendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=3500)
    event_id: str | None = None
    statuses: list[str] = Field(default_factory=lambda: ["confirmed", "pending_payment"])
    user_ids: list[str] = Field(default_factory=list, max_length=10000)


class JobOut(BaseModel):
    id: str
    event_id: str | None
    recipients: int
    counts: dict[str, int]
    created_at: str


class LogEntry(BaseModel):
    id: int
    recipient_id: str
    template_key: str
    status: str
    attempts: int
    event_id: str | None
    registration_id: str | None
    telegram_message_id: int | None
    last_error: str | None
    created_at: str
    sent_at: str | None


class LogPage(BaseModel):
    items: list[LogEntry]
    next_cursor: str | None


class WebhookOut(BaseModel):
    ok: bool = True


class TelegramLinkOut(BaseModel):
    url: str = Field(examples=["https://t.me/afisha_bot?start=L0123..."])
    expires_at: str
