"""Organization use cases: requests, organizations and their members.

Every use case on a caller's behalf checks the caller's rights here, whatever the gateway did.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import Settings
from messaging.outbox import UnitOfWork
from serve.common import paging
from serve.common.context import RequestContext
from serve.common.errors import Conflict, Forbidden, NotFound
from serve.users import domain, membership
from serve.users.schemas import (
    MemberOut,
    OrganizationOut,
    OrganizationRequestIn,
    OrganizationRequestOut,
    Page,
)
from serve.users.service import PRODUCER, caller, new_id, valid_uuid
from storage.user import (
    organization_members,
    organization_requests,
    organizations,
    users,
)

requests_t, members_t = organization_requests, organization_members


def _request_out(row: Row[Any]) -> OrganizationRequestOut:
    return OrganizationRequestOut(**row._mapping)


class Organizations:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions

    # --- questions other services ask ---
    async def organization_role(self, user_id: str, organization_id: str) -> str | None:
        if valid_uuid(user_id) is None or valid_uuid(organization_id) is None:
            return None
        async with self.sessions() as session:
            return await membership.role_of(session, user_id, organization_id)

    # --- organization requests ---
    async def create_request(self, ctx: RequestContext, data: OrganizationRequestIn
                             ) -> OrganizationRequestOut:
        """A pending request; the same name asked again while pending returns that request."""
        me = caller(ctx)
        async with UnitOfWork(self.sessions, PRODUCER, ctx) as uow:
            await uow.session.execute(select(users.c.id).where(users.c.id == me.user_id)
                                      .with_for_update())
            same = (await uow.session.execute(select(requests_t).where(
                requests_t.c.requester_id == me.user_id, requests_t.c.status == domain.PENDING,
                func.lower(requests_t.c.name) == data.name.lower()))).first()
            if same is not None:
                return _request_out(same)
            row = (await uow.session.execute(insert(requests_t).values(
                id=new_id(), requester_id=me.user_id, name=data.name,
                description=data.description, status=domain.PENDING)
                .returning(*requests_t.c))).one()
            uow.publish("organization.request.created",
                        {"request_id": row.id, "requester_id": me.user_id, "name": row.name},
                        aggregate_id=row.id)
            return _request_out(row)

    async def list_requests(self, ctx: RequestContext, status: str | None, cursor: str | None,
                            limit: int) -> Page[OrganizationRequestOut]:
        me = caller(ctx)
        query = select(requests_t)
        if not me.is_admin:
            query = query.where(requests_t.c.requester_id == me.user_id)
        if status:
            query = query.where(requests_t.c.status == status)
        async with self.sessions() as session:
            rows = (await session.execute(paging.keyset(
                query, requests_t.c.created_at, requests_t.c.id, cursor, limit))).all()
        items, next_cursor = paging.split(rows, limit, "created_at", "id")
        return Page[OrganizationRequestOut](items=[_request_out(r) for r in items],
                                            next_cursor=next_cursor)

    async def review_request(self, ctx: RequestContext, request_id: str, action: str,
                             reason: str | None) -> OrganizationRequestOut:
        """Approve or reject (platform admins only; repeating the same decision is a no-op)."""
        me = caller(ctx)
        domain.require_admin(me.roles)
        request_id = membership.checked_id(request_id, "organization request")
        async with self.sessions.begin() as session:
            row = (await session.execute(select(requests_t).where(requests_t.c.id == request_id)
                                         .with_for_update())).first()
            domain.require_found(row, "organization request")
            assert row is not None
            status = domain.review_request(row.status, action)
            if status != row.status:
                row = (await session.execute(
                    update(requests_t).where(requests_t.c.id == request_id)
                    .values(status=status, reviewed_by=me.user_id, reviewed_at=func.now(),
                            reason=reason).returning(*requests_t.c))).one()
            return _request_out(row)

    # --- organizations ---
    async def create_organization(self, ctx: RequestContext, request_id: str) -> OrganizationOut:
        """From the caller's approved request; the caller becomes its Owner. Retries return it."""
        me = caller(ctx)
        request_id = membership.checked_id(request_id, "organization request")
        async with UnitOfWork(self.sessions, PRODUCER, ctx) as uow:
            req = (await uow.session.execute(select(requests_t).where(
                requests_t.c.id == request_id).with_for_update())).first()
            domain.require_found(req, "organization request")
            assert req is not None
            if req.requester_id != me.user_id:
                raise Forbidden("only the requester creates the organization of a request")
            if req.organization_id is not None:
                return await self._organization(uow.session, req.organization_id, me.user_id)
            if req.status != domain.APPROVED:
                raise Conflict(f"the request is {req.status}, not approved",
                               slug="request-not-approved")
            org = (await uow.session.execute(insert(organizations).values(
                id=new_id(), name=req.name, description=req.description, request_id=req.id)
                .on_conflict_do_nothing().returning(*organizations.c))).first()
            if org is None:
                raise Conflict(f"an organization named {req.name!r} already exists",
                               slug="name-taken")
            await uow.session.execute(insert(members_t).values(
                organization_id=org.id, user_id=me.user_id, role=domain.OWNER))
            await uow.session.execute(update(requests_t).where(requests_t.c.id == req.id)
                                      .values(organization_id=org.id))
            uow.publish("organization.created", {"organization_id": org.id,
                                                 "owner_id": me.user_id, "name": org.name},
                        aggregate_id=org.id)
            uow.publish("organization.member.added", {"organization_id": org.id,
                                                      "user_id": me.user_id, "role": domain.OWNER},
                        aggregate_id=org.id)
            return OrganizationOut(**org._mapping, role=domain.OWNER)

    async def _organization(self, session: AsyncSession, organization_id: str, user_id: str
                            ) -> OrganizationOut:
        org = (await session.execute(select(organizations).where(
            organizations.c.id == organization_id))).first()
        domain.require_found(org, "organization")
        assert org is not None
        role = await membership.role_of(session, user_id, organization_id)
        return OrganizationOut(**org._mapping, role=role)

    async def get_organization(self, ctx: RequestContext, organization_id: str
                               ) -> OrganizationOut:
        """Name and description of any organization; the caller's role in it, if any."""
        me = caller(ctx)
        organization_id = membership.checked_id(organization_id, "organization")
        async with self.sessions() as session:
            return await self._organization(session, organization_id, me.user_id)

    async def list_organizations(self, ctx: RequestContext, cursor: str | None, limit: int
                                 ) -> Page[OrganizationOut]:
        """The caller's organizations (admins: every organization)."""
        me = caller(ctx)
        query = select(organizations, members_t.c.role).outerjoin(members_t, (
            members_t.c.organization_id == organizations.c.id)
            & (members_t.c.user_id == me.user_id))
        if not me.is_admin:
            query = query.where(members_t.c.role.is_not(None))
        async with self.sessions() as session:
            rows = (await session.execute(paging.keyset(
                query, organizations.c.created_at, organizations.c.id, cursor, limit))).all()
        items, next_cursor = paging.split(rows, limit, "created_at", "id")
        return Page[OrganizationOut](items=[OrganizationOut(**r._mapping) for r in items],
                                     next_cursor=next_cursor)

    # --- members ---
    async def list_members(self, ctx: RequestContext, organization_id: str, cursor: str | None,
                           limit: int) -> Page[MemberOut]:
        organization_id = membership.checked_id(organization_id, "organization")
        async with self.sessions() as session:
            role = await membership.caller_role(session, ctx, organization_id)
            domain.require_reader(role, caller(ctx).is_admin)
            query = (select(members_t.c.user_id, members_t.c.role, members_t.c.created_at,
                            users.c.display_name)
                     .join(users, users.c.id == members_t.c.user_id)
                     .where(members_t.c.organization_id == organization_id))
            rows = (await session.execute(paging.keyset(
                query, members_t.c.created_at, members_t.c.user_id, cursor, limit))).all()
        items, next_cursor = paging.split(rows, limit, "created_at", "user_id")
        return Page[MemberOut](items=[MemberOut(**r._mapping) for r in items],
                               next_cursor=next_cursor)

    async def _lock_members(self, session: AsyncSession, ctx: RequestContext,
                            organization_id: str, user_id: str) -> tuple[str, int]:
        """Owner check, then the target's role and the number of Owners (rows locked)."""
        domain.require_owner(await membership.caller_role(session, ctx, organization_id))
        rows = (await session.execute(select(members_t.c.user_id, members_t.c.role).where(
            members_t.c.organization_id == organization_id).with_for_update())).all()
        roles = {r.user_id: r.role for r in rows}
        if user_id not in roles:
            raise NotFound("this user is not a member of the organization")
        return roles[user_id], sum(1 for r in roles.values() if r == domain.OWNER)

    async def change_role(self, ctx: RequestContext, organization_id: str, user_id: str,
                          role: str) -> MemberOut:
        organization_id = membership.checked_id(organization_id, "organization")
        user_id = membership.checked_id(user_id, "member")
        domain.check_role(role)
        async with self.sessions.begin() as session:
            current, owners = await self._lock_members(session, ctx, organization_id, user_id)
            domain.check_owner_remains(owners, current, role)
            await session.execute(update(members_t).where(
                members_t.c.organization_id == organization_id, members_t.c.user_id == user_id)
                .values(role=role))
            row = (await session.execute(
                select(members_t.c.user_id, members_t.c.role, members_t.c.created_at,
                       users.c.display_name).join(users, users.c.id == members_t.c.user_id)
                .where(members_t.c.organization_id == organization_id,
                       members_t.c.user_id == user_id))).one()
            return MemberOut(**row._mapping)

    async def remove_member(self, ctx: RequestContext, organization_id: str, user_id: str
                            ) -> None:
        organization_id = membership.checked_id(organization_id, "organization")
        user_id = membership.checked_id(user_id, "member")
        async with self.sessions.begin() as session:
            current, owners = await self._lock_members(session, ctx, organization_id, user_id)
            domain.check_owner_remains(owners, current, None)
            await session.execute(delete(members_t).where(
                members_t.c.organization_id == organization_id, members_t.c.user_id == user_id))
