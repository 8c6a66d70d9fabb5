"""Lookups shared by the organization and group use cases: ids, roles, groups."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from serve.common.context import RequestContext
from serve.common.errors import NotFound
from serve.users import domain
from serve.users.service import caller, valid_uuid
from storage.user import groups, organization_members, organizations


def checked_id(value: str, what: str) -> str:
    """A well-formed UUID, or 404 (a malformed id names nothing)."""
    checked = valid_uuid(value)
    if checked is None:
        raise NotFound(f"{what} not found")
    return checked


async def role_of(session: AsyncSession, user_id: str, organization_id: str) -> str | None:
    role: str | None = await session.scalar(select(organization_members.c.role).where(
        organization_members.c.organization_id == organization_id,
        organization_members.c.user_id == user_id))
    return role


async def caller_role(session: AsyncSession, ctx: RequestContext, organization_id: str
                      ) -> str | None:
    """The caller's role in an existing organization (404 when there is no such one)."""
    me = caller(ctx)
    exists = await session.scalar(select(organizations.c.id).where(
        organizations.c.id == organization_id))
    domain.require_found(exists, "organization")
    return await role_of(session, me.user_id, organization_id)


async def group_row(session: AsyncSession, group_id: str) -> Row[Any]:
    row = (await session.execute(select(groups).where(
        groups.c.id == checked_id(group_id, "group")))).first()
    domain.require_found(row, "group")
    assert row is not None
    return row
