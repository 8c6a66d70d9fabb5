"""Serve deployment of the user service: typed async methods other deployments call.

Questions other services ask (no caller rights involved; ids are UUID strings, a malformed
one answers None/False): ``organization_role``, ``is_group_member``, ``group_organization``,
``telegram_chat_id``; for the Telegram bot, ``accept_invite_from_telegram`` and
``telegram_chat_changed``. Every other
method acts on behalf of ``ctx.identity`` and checks its rights itself.
"""

from __future__ import annotations

from typing import Any

from serve.common.context import RequestContext, bound
from serve.common.service import ServiceBase
from serve.users.groups import Groups
from serve.users.organizations import Organizations
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
from serve.users.service import Accounts
from serve.users.throttle import LoginThrottle


class UserService(ServiceBase):
    service = "user"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.throttle = LoginThrottle(self.settings)
        self.accounts = Accounts(self.settings, self.sessions, self.throttle)
        self.organizations = Organizations(self.settings, self.sessions)
        self.groups = Groups(self.settings, self.sessions)

    async def close(self) -> None:
        await self.throttle.close()
        await super().close()

    # --- questions from other services ---
    async def organization_role(self, ctx: RequestContext, user_id: str,
                                organization_id: str) -> str | None:
        """``"owner"``, ``"moderator"`` or None."""
        with bound(ctx):
            return await self.organizations.organization_role(user_id, organization_id)

    async def is_group_member(self, ctx: RequestContext, user_id: str, group_id: str) -> bool:
        with bound(ctx):
            return await self.groups.is_group_member(user_id, group_id)

    async def group_organization(self, ctx: RequestContext, group_id: str) -> str | None:
        with bound(ctx):
            return await self.groups.group_organization(group_id)

    async def telegram_chat_id(self, ctx: RequestContext, user_id: str) -> int | None:
        with bound(ctx):
            return await self.accounts.telegram_chat_id(user_id)

    async def telegram_chat_changed(self, ctx: RequestContext, user_id: str, chat_id: int,
                                    reachable: bool, username: str | None = None) -> bool:
        """For the bot: the user's chat was linked, or became unreachable or reachable."""
        with bound(ctx):
            return await self.accounts.telegram_chat_changed(ctx, user_id, chat_id, reachable,
                                                             username)

    # --- authentication ---
    async def register(self, ctx: RequestContext, data: RegisterIn) -> TokenPairOut:
        with bound(ctx):
            return await self.accounts.register(ctx, data)

    async def login(self, ctx: RequestContext, data: LoginIn) -> TokenPairOut:
        with bound(ctx):
            return await self.accounts.login(ctx, data)

    async def telegram_login(self, ctx: RequestContext, data: TelegramLoginIn) -> TokenPairOut:
        with bound(ctx):
            return await self.accounts.telegram_login(ctx, data)

    async def link_telegram(self, ctx: RequestContext, data: TelegramLoginIn) -> UserOut:
        with bound(ctx):
            return await self.accounts.link_telegram(ctx, data)

    async def refresh(self, ctx: RequestContext, refresh_token: str) -> TokenPairOut:
        with bound(ctx):
            return await self.accounts.refresh(ctx, refresh_token)

    async def logout(self, ctx: RequestContext, refresh_token: str) -> None:
        with bound(ctx):
            await self.accounts.logout(ctx, refresh_token)

    # --- the caller's account ---
    async def me(self, ctx: RequestContext) -> UserOut:
        with bound(ctx):
            return await self.accounts.me(ctx)

    async def update_me(self, ctx: RequestContext, patch: ProfilePatch) -> UserOut:
        with bound(ctx):
            return await self.accounts.update_me(ctx, patch)

    # --- organization requests and organizations ---
    async def create_organization_request(self, ctx: RequestContext,
                                          data: OrganizationRequestIn) -> OrganizationRequestOut:
        with bound(ctx):
            return await self.organizations.create_request(ctx, data)

    async def list_organization_requests(self, ctx: RequestContext, status: str | None,
                                         cursor: str | None, limit: int
                                         ) -> Page[OrganizationRequestOut]:
        with bound(ctx):
            return await self.organizations.list_requests(ctx, status, cursor, limit)

    async def review_organization_request(self, ctx: RequestContext, request_id: str,
                                          action: str, reason: str | None
                                          ) -> OrganizationRequestOut:
        with bound(ctx):
            return await self.organizations.review_request(ctx, request_id, action, reason)

    async def create_organization(self, ctx: RequestContext, request_id: str) -> OrganizationOut:
        with bound(ctx):
            return await self.organizations.create_organization(ctx, request_id)

    async def get_organization(self, ctx: RequestContext, organization_id: str
                               ) -> OrganizationOut:
        with bound(ctx):
            return await self.organizations.get_organization(ctx, organization_id)

    async def list_organizations(self, ctx: RequestContext, cursor: str | None, limit: int
                                 ) -> Page[OrganizationOut]:
        with bound(ctx):
            return await self.organizations.list_organizations(ctx, cursor, limit)

    # --- members, groups, invites ---
    async def list_members(self, ctx: RequestContext, organization_id: str,
                           cursor: str | None, limit: int) -> Page[MemberOut]:
        with bound(ctx):
            return await self.organizations.list_members(ctx, organization_id, cursor, limit)

    async def change_member_role(self, ctx: RequestContext, organization_id: str, user_id: str,
                                 role: str) -> MemberOut:
        with bound(ctx):
            return await self.organizations.change_role(ctx, organization_id, user_id, role)

    async def remove_member(self, ctx: RequestContext, organization_id: str, user_id: str
                            ) -> None:
        with bound(ctx):
            await self.organizations.remove_member(ctx, organization_id, user_id)

    async def invite_to_organization(self, ctx: RequestContext, organization_id: str,
                                     role: str) -> InviteOut:
        with bound(ctx):
            return await self.groups.invite_to_organization(ctx, organization_id, role)

    async def invite_to_group(self, ctx: RequestContext, group_id: str) -> InviteOut:
        with bound(ctx):
            return await self.groups.invite_to_group(ctx, group_id)

    async def accept_invite(self, ctx: RequestContext, token: str) -> InviteAcceptedOut:
        with bound(ctx):
            return await self.groups.accept_invite(ctx, token)

    async def accept_invite_from_telegram(self, ctx: RequestContext, telegram_id: int,
                                          token: str) -> InviteAcceptedOut:
        """For the bot: ``/start <token>`` from Telegram user ``telegram_id``."""
        with bound(ctx):
            return await self.groups.accept_invite_from_telegram(ctx, telegram_id, token)

    async def create_group(self, ctx: RequestContext, organization_id: str, data: GroupIn
                           ) -> GroupOut:
        with bound(ctx):
            return await self.groups.create_group(ctx, organization_id, data)

    async def list_groups(self, ctx: RequestContext, organization_id: str, cursor: str | None,
                          limit: int) -> Page[GroupOut]:
        with bound(ctx):
            return await self.groups.list_groups(ctx, organization_id, cursor, limit)

    async def list_group_members(self, ctx: RequestContext, group_id: str, cursor: str | None,
                                 limit: int) -> Page[GroupMemberOut]:
        with bound(ctx):
            return await self.groups.list_group_members(ctx, group_id, cursor, limit)
