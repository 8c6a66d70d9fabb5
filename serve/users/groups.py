"""Group and invite use cases: groups of an organization, their members, single-use invites.

Groups are the audiences of private events: an organization's Owners and Moderators manage
them. Invites (to the organization, by Owners; to a group, by Owners and Moderators) are
single-use tokens that expire, shared as a Telegram deep link.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import Settings
from messaging.outbox import UnitOfWork
from serve.common import paging
from serve.common.context import Identity, RequestContext
from serve.common.errors import Conflict, NotFound
from serve.users import domain, membership, tokens
from serve.users.schemas import (
    GroupIn,
    GroupMemberOut,
    GroupOut,
    InviteAcceptedOut,
    InviteOut,
    Page,
)
from serve.users.service import PRODUCER, caller, new_id, valid_uuid
from storage.user import group_members, groups, invites, organization_members, users


class Groups:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions

    # --- questions other services ask ---
    async def is_group_member(self, user_id: str, group_id: str) -> bool:
        if valid_uuid(user_id) is None or valid_uuid(group_id) is None:
            return False
        async with self.sessions() as session:
            found = await session.scalar(select(group_members.c.user_id).where(
                group_members.c.group_id == group_id, group_members.c.user_id == user_id))
        return found is not None

    async def group_organization(self, group_id: str) -> str | None:
        if valid_uuid(group_id) is None:
            return None
        async with self.sessions() as session:
            org: str | None = await session.scalar(
                select(groups.c.organization_id).where(groups.c.id == group_id))
        return org

    # --- groups ---
    async def create_group(self, ctx: RequestContext, organization_id: str, data: GroupIn
                           ) -> GroupOut:
        """Group names are unique per organization; creating an existing name returns it."""
        organization_id = membership.checked_id(organization_id, "organization")
        async with UnitOfWork(self.sessions, PRODUCER, ctx) as uow:
            domain.require_staff(await membership.caller_role(uow.session, ctx, organization_id))
            row = (await uow.session.execute(insert(groups).values(
                id=new_id(), organization_id=organization_id, name=data.name,
                description=data.description, created_by=caller(ctx).user_id)
                .on_conflict_do_nothing().returning(*groups.c))).first()
            if row is None:  # a retry, or the name is taken: that group is the answer
                existing = (await uow.session.execute(select(groups).where(
                    groups.c.organization_id == organization_id,
                    func.lower(groups.c.name) == data.name.lower()))).one()
                return GroupOut(**existing._mapping)
            uow.publish("group.created", {"group_id": row.id, "organization_id": organization_id,
                                          "name": row.name}, aggregate_id=row.id)
            return GroupOut(**row._mapping)

    async def list_groups(self, ctx: RequestContext, organization_id: str, cursor: str | None,
                          limit: int) -> Page[GroupOut]:
        organization_id = membership.checked_id(organization_id, "organization")
        async with self.sessions() as session:
            role = await membership.caller_role(session, ctx, organization_id)
            domain.require_reader(role, caller(ctx).is_admin)
            rows = (await session.execute(paging.keyset(
                select(groups).where(groups.c.organization_id == organization_id),
                groups.c.created_at, groups.c.id, cursor, limit))).all()
        items, next_cursor = paging.split(rows, limit, "created_at", "id")
        return Page[GroupOut](items=[GroupOut(**r._mapping) for r in items],
                              next_cursor=next_cursor)

    async def list_group_members(self, ctx: RequestContext, group_id: str, cursor: str | None,
                                 limit: int) -> Page[GroupMemberOut]:
        async with self.sessions() as session:
            group = await membership.group_row(session, group_id)
            role = await membership.caller_role(session, ctx, group.organization_id)
            domain.require_reader(role, caller(ctx).is_admin)
            query = (select(group_members.c.user_id, group_members.c.created_at,
                            users.c.display_name)
                     .join(users, users.c.id == group_members.c.user_id)
                     .where(group_members.c.group_id == group.id))
            rows = (await session.execute(paging.keyset(
                query, group_members.c.created_at, group_members.c.user_id, cursor, limit))).all()
        items, next_cursor = paging.split(rows, limit, "created_at", "user_id")
        return Page[GroupMemberOut](items=[GroupMemberOut(**r._mapping) for r in items],
                                    next_cursor=next_cursor)

    # --- invites ---
    async def _invite(self, session: AsyncSession, ctx: RequestContext, organization_id: str,
                      group_id: str | None, role: str | None) -> InviteOut:
        token = secrets.token_urlsafe(24)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.invite_ttl_seconds)
        row = (await session.execute(insert(invites).values(
            id=new_id(), token_hash=tokens.digest(token), organization_id=organization_id,
            group_id=group_id, role=role, created_by=caller(ctx).user_id, expires_at=expires)
            .returning(invites.c.id))).one()
        url = f"https://t.me/{self.settings.telegram_bot_username}?start={token}"
        return InviteOut(id=row.id, token=token, url=url, organization_id=organization_id,
                         group_id=group_id, role=role, expires_at=expires)

    async def invite_to_organization(self, ctx: RequestContext, organization_id: str,
                                     role: str) -> InviteOut:
        organization_id = membership.checked_id(organization_id, "organization")
        domain.check_role(role)
        async with self.sessions.begin() as session:
            domain.require_owner(await membership.caller_role(session, ctx, organization_id))
            return await self._invite(session, ctx, organization_id, None, role)

    async def invite_to_group(self, ctx: RequestContext, group_id: str) -> InviteOut:
        async with self.sessions.begin() as session:
            group = await membership.group_row(session, group_id)
            domain.require_staff(await membership.caller_role(session, ctx, group.organization_id))
            return await self._invite(session, ctx, group.organization_id, group.id, None)

    async def accept_invite(self, ctx: RequestContext, token: str) -> InviteAcceptedOut:
        """Single use: the first caller joins; the same caller retrying gets the same answer."""
        me = caller(ctx)
        async with UnitOfWork(self.sessions, PRODUCER, ctx) as uow:
            inv = (await uow.session.execute(select(invites).where(
                invites.c.token_hash == tokens.digest(token)).with_for_update())).first()
            domain.require_found(inv, "invite")
            assert inv is not None
            out = InviteAcceptedOut(organization_id=inv.organization_id, group_id=inv.group_id,
                                    role=inv.role)
            if not domain.check_invite(inv.expires_at, inv.accepted_by, me.user_id,
                                       datetime.now(UTC)):
                return out
            await uow.session.execute(update(invites).where(invites.c.id == inv.id)
                                      .values(accepted_by=me.user_id, accepted_at=func.now()))
            if inv.group_id is None:
                await self._join_organization(uow, inv.organization_id, me.user_id, inv.role)
            else:
                await self._join_group(uow, inv.organization_id, inv.group_id, me.user_id)
            return out

    async def accept_invite_from_telegram(self, ctx: RequestContext, telegram_id: int,
                                          token: str) -> InviteAcceptedOut:
        """The bot's ``/start <token>``: accept for the account linked to that Telegram user."""
        async with self.sessions() as session:
            user_id = await session.scalar(select(users.c.id).where(
                users.c.telegram_id == telegram_id))
        if user_id is None:
            raise NotFound("no account is linked to this Telegram user; log in on the site "
                           "with Telegram first", slug="telegram-unknown")
        return await self.accept_invite(replace(ctx, identity=Identity(str(user_id))), token)

    async def _join_organization(self, uow: UnitOfWork, organization_id: str, user_id: str,
                                 role: str) -> None:
        added = (await uow.session.execute(insert(organization_members).values(
            organization_id=organization_id, user_id=user_id, role=role)
            .on_conflict_do_nothing().returning(organization_members.c.user_id))).first()
        if added is None:
            raise Conflict("you are already a member of this organization",
                           slug="already-member")
        uow.publish("organization.member.added", {"organization_id": organization_id,
                                                  "user_id": user_id, "role": role},
                    aggregate_id=organization_id)

    async def _join_group(self, uow: UnitOfWork, organization_id: str, group_id: str,
                          user_id: str) -> None:
        added = (await uow.session.execute(insert(group_members).values(
            group_id=group_id, user_id=user_id)
            .on_conflict_do_nothing().returning(group_members.c.user_id))).first()
        if added is None:
            raise Conflict("you are already a member of this group", slug="already-member")
        uow.publish("group.member.added", {"group_id": group_id,
                                           "organization_id": organization_id,
                                           "user_id": user_id}, aggregate_id=group_id)
