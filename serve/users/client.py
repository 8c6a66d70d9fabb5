"""Typed client of the user service (``serve.users.deployment.UserService``)."""

from __future__ import annotations

from typing import cast

from serve.common.clients import ClientBase
from serve.common.context import RequestContext
from serve.users.schemas import (
    GroupIn,
    GroupMemberOut,
    GroupOut,
    InviteAcceptedOut,
    InviteOut,
    LoginIn,
    MemberOut,
    OrganizationOut,
    OrganizationRequestIn,
    OrganizationRequestOut,
    Page,
    ProfilePatch,
    RegisterIn,
    TelegramLoginIn,
    TokenPairOut,
    UserOut,
)


class UserClient(ClientBase):
    # --- questions from other services ---
    async def organization_role(self, ctx: RequestContext, user_id: str,
                                organization_id: str) -> str | None:
        return cast(str | None, await self.transport.call(
            "organization_role", ctx, user_id, organization_id))

    async def is_group_member(self, ctx: RequestContext, user_id: str, group_id: str) -> bool:
        return bool(await self.transport.call("is_group_member", ctx, user_id, group_id))

    async def group_organization(self, ctx: RequestContext, group_id: str) -> str | None:
        return cast(str | None, await self.transport.call("group_organization", ctx, group_id))

    async def telegram_chat_id(self, ctx: RequestContext, user_id: str) -> int | None:
        return cast(int | None, await self.transport.call("telegram_chat_id", ctx, user_id))

    # --- authentication ---
    async def register(self, ctx: RequestContext, data: RegisterIn) -> TokenPairOut:
        return cast(TokenPairOut, await self.transport.call("register", ctx, data))

    async def login(self, ctx: RequestContext, data: LoginIn) -> TokenPairOut:
        return cast(TokenPairOut, await self.transport.call("login", ctx, data))

    async def telegram_chat_changed(self, ctx: RequestContext, user_id: str, chat_id: int,
                                    reachable: bool, username: str | None = None) -> bool:
        return cast(bool, await self.transport.call(
            "telegram_chat_changed", ctx, user_id, chat_id, reachable, username))

    async def telegram_login(self, ctx: RequestContext, data: TelegramLoginIn) -> TokenPairOut:
        return cast(TokenPairOut, await self.transport.call("telegram_login", ctx, data))

    async def refresh(self, ctx: RequestContext, refresh_token: str) -> TokenPairOut:
        return cast(TokenPairOut, await self.transport.call("refresh", ctx, refresh_token))

    async def logout(self, ctx: RequestContext, refresh_token: str) -> None:
        await self.transport.call("logout", ctx, refresh_token)

    # --- the caller's account ---
    async def me(self, ctx: RequestContext) -> UserOut:
        return cast(UserOut, await self.transport.call("me", ctx))

    async def update_me(self, ctx: RequestContext, patch: ProfilePatch) -> UserOut:
        return cast(UserOut, await self.transport.call("update_me", ctx, patch))

    async def link_telegram(self, ctx: RequestContext, data: TelegramLoginIn) -> UserOut:
        return cast(UserOut, await self.transport.call("link_telegram", ctx, data))

    # --- organization requests and organizations ---
    async def create_organization_request(self, ctx: RequestContext,
                                          data: OrganizationRequestIn) -> OrganizationRequestOut:
        return cast(OrganizationRequestOut, await self.transport.call(
            "create_organization_request", ctx, data))

    async def list_organization_requests(self, ctx: RequestContext, status: str | None,
                                         cursor: str | None, limit: int
                                         ) -> Page[OrganizationRequestOut]:
        return cast(Page[OrganizationRequestOut], await self.transport.call(
            "list_organization_requests", ctx, status, cursor, limit))

    async def review_organization_request(self, ctx: RequestContext, request_id: str,
                                          action: str, reason: str | None
                                          ) -> OrganizationRequestOut:
        return cast(OrganizationRequestOut, await self.transport.call(
            "review_organization_request", ctx, request_id, action, reason))

    async def create_organization(self, ctx: RequestContext, request_id: str) -> OrganizationOut:
        return cast(OrganizationOut, await self.transport.call(
            "create_organization", ctx, request_id))

    async def get_organization(self, ctx: RequestContext, organization_id: str
                               ) -> OrganizationOut:
        return cast(OrganizationOut, await self.transport.call(
            "get_organization", ctx, organization_id))

    async def list_organizations(self, ctx: RequestContext, cursor: str | None, limit: int
                                 ) -> Page[OrganizationOut]:
        return cast(Page[OrganizationOut], await self.transport.call(
            "list_organizations", ctx, cursor, limit))

    # --- members, groups, invites ---
    async def list_members(self, ctx: RequestContext, organization_id: str,
                           cursor: str | None, limit: int) -> Page[MemberOut]:
        return cast(Page[MemberOut], await self.transport.call(
            "list_members", ctx, organization_id, cursor, limit))

    async def change_member_role(self, ctx: RequestContext, organization_id: str, user_id: str,
                                 role: str) -> MemberOut:
        return cast(MemberOut, await self.transport.call(
            "change_member_role", ctx, organization_id, user_id, role))

    async def remove_member(self, ctx: RequestContext, organization_id: str,
                            user_id: str) -> None:
        await self.transport.call("remove_member", ctx, organization_id, user_id)

    async def invite_to_organization(self, ctx: RequestContext, organization_id: str,
                                     role: str) -> InviteOut:
        return cast(InviteOut, await self.transport.call(
            "invite_to_organization", ctx, organization_id, role))

    async def invite_to_group(self, ctx: RequestContext, group_id: str) -> InviteOut:
        return cast(InviteOut, await self.transport.call("invite_to_group", ctx, group_id))

    async def accept_invite(self, ctx: RequestContext, token: str) -> InviteAcceptedOut:
        return cast(InviteAcceptedOut, await self.transport.call("accept_invite", ctx, token))

    async def accept_invite_from_telegram(self, ctx: RequestContext, telegram_id: int,
                                          token: str) -> InviteAcceptedOut:
        return cast(InviteAcceptedOut, await self.transport.call(
            "accept_invite_from_telegram", ctx, telegram_id, token))

    async def create_group(self, ctx: RequestContext, organization_id: str,
                           data: GroupIn) -> GroupOut:
        return cast(GroupOut, await self.transport.call(
            "create_group", ctx, organization_id, data))

    async def list_groups(self, ctx: RequestContext, organization_id: str, cursor: str | None,
                          limit: int) -> Page[GroupOut]:
        return cast(Page[GroupOut], await self.transport.call(
            "list_groups", ctx, organization_id, cursor, limit))

    async def list_group_members(self, ctx: RequestContext, group_id: str, cursor: str | None,
                                 limit: int) -> Page[GroupMemberOut]:
        return cast(Page[GroupMemberOut], await self.transport.call(
            "list_group_members", ctx, group_id, cursor, limit))
