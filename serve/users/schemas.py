"""Input and output of the user service (pydantic; shared by the gateway and the service)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Role = Literal["owner", "moderator"]


class Strict(BaseModel):
    """Input: unknown fields are a 422, never silently applied."""

    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    email: EmailStr
    password: Password
    display_name: Name


class LoginIn(Strict):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RefreshIn(Strict):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class TelegramLoginIn(BaseModel):
    """Login Widget fields; fields Telegram may add later are kept (they are signed too)."""

    model_config = ConfigDict(extra="allow")
    id: int
    first_name: Annotated[str, StringConstraints(max_length=256)]
    last_name: Annotated[str, StringConstraints(max_length=256)] | None = None
    username: Annotated[str, StringConstraints(max_length=64)] | None = None
    photo_url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    auth_date: int
    hash: Annotated[str, StringConstraints(min_length=64, max_length=64)]


class ProfilePatch(Strict):
    """The fields of their own account a user may change (``EDITABLE_PROFILE_FIELDS``)."""

    display_name: Name | None = None
    locale: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] | None = None


class OrganizationRequestIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=100)]
    description: Text = ""


class ReviewIn(Strict):
    reason: Text | None = None


class OrganizationIn(Strict):
    request_id: uuid.UUID


class MemberRoleIn(Strict):
    role: Role


class OrganizationInviteIn(Strict):
    role: Role = "moderator"


class GroupIn(Strict):
    name: Name
    description: Text = ""


class TelegramAccount(BaseModel):
    id: int
    username: str | None = None


class UserOut(BaseModel):
    id: str
    email: str | None
    display_name: str
    roles: list[str]
    locale: str | None = None
    telegram: TelegramAccount | None = None
    created_at: datetime


class TokenPairOut(BaseModel):
    user: UserOut
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class SessionOut(BaseModel):
    """Who an access token says the caller is: its subject and its roles."""

    user_id: str
    roles: list[str]


class OrganizationRequestOut(BaseModel):
    id: str
    status: str
    name: str
    description: str
    requester_id: str
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    reason: str | None = None
    organization_id: str | None = None
    created_at: datetime


class OrganizationOut(BaseModel):
    id: str
    name: str
    description: str
    created_at: datetime
    role: str | None = Field(default=None, description="the caller's role in it, if any")


class MemberOut(BaseModel):
    user_id: str
    display_name: str
    role: str
    created_at: datetime


class GroupOut(BaseModel):
    id: str
    organization_id: str
    name: str
    description: str
    created_at: datetime


class GroupMemberOut(BaseModel):
    user_id: str
    display_name: str
    created_at: datetime


class InviteOut(BaseModel):
    id: str
    token: str
    url: str = Field(description="Telegram deep link that opens the bot with the invite")
    organization_id: str
    group_id: str | None = None
    role: str | None = None
    expires_at: datetime


class InviteAcceptedOut(BaseModel):
    organization_id: str
    group_id: str | None = None
    role: str | None = None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
