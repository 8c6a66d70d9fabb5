"""User service routes: authentication, the caller's account, organizations, groups, invites."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from serve.gateway.deps import PublicContext, ServicesDep, UserContext
from serve.users.schemas import (
    GroupIn,
    GroupMemberOut,
    GroupOut,
    InviteAcceptedOut,
    InviteOut,
    LoginIn,
    MemberOut,
    MemberRoleIn,
    OrganizationIn,
    OrganizationInviteIn,
    OrganizationOut,
    OrganizationRequestIn,
    OrganizationRequestOut,
    Page,
    ProfilePatch,
    RefreshIn,
    RegisterIn,
    ReviewIn,
    SessionOut,
    TelegramLoginIn,
    TokenPairOut,
    UserOut,
)

router = APIRouter(prefix="/api/v1")
Cursor = Annotated[str | None, Query(max_length=512)]
Limit = Annotated[int, Query(ge=1, le=200)]
InviteToken = Annotated[str, Path(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


# --- authentication (public) ---
@router.post("/auth/register", status_code=201, response_model=TokenPairOut, tags=["auth"])
async def register(body: RegisterIn, ctx: PublicContext, services: ServicesDep) -> Any:
    return await services.user.register(ctx, body)


@router.post("/auth/login", response_model=TokenPairOut, tags=["auth"])
async def login(body: LoginIn, ctx: PublicContext, services: ServicesDep) -> Any:
    return await services.user.login(ctx, body)


@router.post("/auth/telegram", response_model=TokenPairOut, tags=["auth"])
async def telegram_login(body: TelegramLoginIn, ctx: PublicContext,
                         services: ServicesDep) -> Any:
    return await services.user.telegram_login(ctx, body)


@router.post("/auth/refresh", response_model=TokenPairOut, tags=["auth"])
async def refresh(body: RefreshIn, ctx: PublicContext, services: ServicesDep) -> Any:
    return await services.user.refresh(ctx, body.refresh_token)


@router.post("/auth/logout", status_code=204, response_class=Response, tags=["auth"])
async def logout(body: RefreshIn, ctx: PublicContext, services: ServicesDep) -> Response:
    await services.user.logout(ctx, body.refresh_token)
    return Response(status_code=204)


@router.get("/auth/session", response_model=SessionOut, tags=["auth"],
            summary="The identity an access token carries (answered by the gateway alone)")
async def session(ctx: UserContext) -> Any:
    assert ctx.identity is not None
    return SessionOut(user_id=ctx.identity.user_id, roles=list(ctx.identity.roles))


# --- the caller's account ---
@router.get("/users/me", response_model=UserOut, tags=["users"])
async def me(ctx: UserContext, services: ServicesDep) -> Any:
    return await services.user.me(ctx)


@router.patch("/users/me", response_model=UserOut, tags=["users"])
async def update_me(body: ProfilePatch, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.user.update_me(ctx, body)


@router.post("/users/me/telegram", response_model=UserOut, tags=["users"],
             summary="Link a Telegram account (Login Widget fields) to the caller's account")
async def link_telegram(body: TelegramLoginIn, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.user.link_telegram(ctx, body)


# --- organization requests ---
@router.post("/organization-requests", status_code=201, response_model=OrganizationRequestOut,
             tags=["organizations"])
async def create_request(body: OrganizationRequestIn, ctx: UserContext,
                         services: ServicesDep) -> Any:
    return await services.user.create_organization_request(ctx, body)


@router.get("/organization-requests", response_model=Page[OrganizationRequestOut],
            tags=["organizations"], summary="Admins: every request; others: their own")
async def list_requests(ctx: UserContext, services: ServicesDep, cursor: Cursor = None,
                        limit: Limit = 50,
                        status: Annotated[str | None, Query(
                            pattern="^(pending|approved|rejected)$")] = None) -> Any:
    return await services.user.list_organization_requests(ctx, status, cursor, limit)


@router.post("/organization-requests/{request_id}/approve",
             response_model=OrganizationRequestOut, tags=["organizations"])
async def approve(request_id: uuid.UUID, ctx: UserContext, services: ServicesDep,
                  body: ReviewIn | None = None) -> Any:
    reason = body.reason if body else None
    return await services.user.review_organization_request(ctx, str(request_id), "approve",
                                                           reason)


@router.post("/organization-requests/{request_id}/reject",
             response_model=OrganizationRequestOut, tags=["organizations"])
async def reject(request_id: uuid.UUID, ctx: UserContext, services: ServicesDep,
                 body: ReviewIn | None = None) -> Any:
    reason = body.reason if body else None
    return await services.user.review_organization_request(ctx, str(request_id), "reject",
                                                           reason)


# --- organizations and members ---
@router.post("/organizations", status_code=201, response_model=OrganizationOut,
             tags=["organizations"])
async def create_organization(body: OrganizationIn, ctx: UserContext,
                              services: ServicesDep) -> Any:
    return await services.user.create_organization(ctx, str(body.request_id))


@router.get("/organizations", response_model=Page[OrganizationOut], tags=["organizations"],
            summary="The caller's organizations (admins: all)")
async def list_organizations(ctx: UserContext, services: ServicesDep, cursor: Cursor = None,
                             limit: Limit = 50) -> Any:
    return await services.user.list_organizations(ctx, cursor, limit)


@router.get("/organizations/{organization_id}", response_model=OrganizationOut,
            tags=["organizations"])
async def get_organization(organization_id: uuid.UUID, ctx: UserContext,
                           services: ServicesDep) -> Any:
    return await services.user.get_organization(ctx, str(organization_id))


@router.get("/organizations/{organization_id}/members", response_model=Page[MemberOut],
            tags=["organizations"])
async def list_members(organization_id: uuid.UUID, ctx: UserContext, services: ServicesDep,
                       cursor: Cursor = None, limit: Limit = 50) -> Any:
    return await services.user.list_members(ctx, str(organization_id), cursor, limit)


@router.patch("/organizations/{organization_id}/members/{user_id}", response_model=MemberOut,
              tags=["organizations"])
async def change_member_role(organization_id: uuid.UUID, user_id: uuid.UUID, body: MemberRoleIn,
                             ctx: UserContext, services: ServicesDep) -> Any:
    return await services.user.change_member_role(ctx, str(organization_id), str(user_id),
                                                  body.role)


@router.delete("/organizations/{organization_id}/members/{user_id}", status_code=204,
               response_class=Response, tags=["organizations"])
async def remove_member(organization_id: uuid.UUID, user_id: uuid.UUID, ctx: UserContext,
                        services: ServicesDep) -> Response:
    await services.user.remove_member(ctx, str(organization_id), str(user_id))
    return Response(status_code=204)


@router.post("/organizations/{organization_id}/invite", status_code=201,
             response_model=InviteOut, tags=["invites"])
async def invite_to_organization(organization_id: uuid.UUID, ctx: UserContext,
                                 services: ServicesDep,
                                 body: OrganizationInviteIn | None = None) -> Any:
    role = body.role if body else "moderator"
    return await services.user.invite_to_organization(ctx, str(organization_id), role)


@router.post("/invites/{token}/accept", response_model=InviteAcceptedOut, tags=["invites"])
async def accept_invite(token: InviteToken, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.user.accept_invite(ctx, token)


# --- groups ---
@router.get("/organizations/{organization_id}/groups", response_model=Page[GroupOut],
            tags=["groups"])
async def list_groups(organization_id: uuid.UUID, ctx: UserContext, services: ServicesDep,
                      cursor: Cursor = None, limit: Limit = 50) -> Any:
    return await services.user.list_groups(ctx, str(organization_id), cursor, limit)


@router.post("/organizations/{organization_id}/groups", status_code=201,
             response_model=GroupOut, tags=["groups"])
async def create_group(organization_id: uuid.UUID, body: GroupIn, ctx: UserContext,
                       services: ServicesDep) -> Any:
    return await services.user.create_group(ctx, str(organization_id), body)


@router.get("/groups/{group_id}/members", response_model=Page[GroupMemberOut], tags=["groups"])
async def list_group_members(group_id: uuid.UUID, ctx: UserContext, services: ServicesDep,
                             cursor: Cursor = None, limit: Limit = 50) -> Any:
    return await services.user.list_group_members(ctx, str(group_id), cursor, limit)


@router.post("/groups/{group_id}/invite", status_code=201, response_model=InviteOut,
             tags=["invites"])
async def invite_to_group(group_id: uuid.UUID, ctx: UserContext, services: ServicesDep) -> Any:
    return await services.user.invite_to_group(ctx, str(group_id))
