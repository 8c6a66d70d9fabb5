"""Account use cases: registration, logins, token rotation, the caller's own profile."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cluster.settings import Settings, reveal
from messaging.outbox import UnitOfWork
from serve.common.context import Identity, RequestContext
from serve.common.errors import Conflict, NotFound, Unauthorized
from serve.users import passwords, telegram, tokens
from serve.users.domain import EDITABLE_PROFILE_FIELDS, platform_roles
from serve.users.schemas import (
    LoginIn,
    ProfilePatch,
    RegisterIn,
    TelegramAccount,
    TelegramLoginIn,
    TokenPairOut,
    UserOut,
)
from serve.users.throttle import LoginThrottle
from storage.user import refresh_tokens, users

PRODUCER = "user"


def new_id() -> str:
    return str(uuid.uuid4())


def valid_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def caller(ctx: RequestContext) -> Identity:
    """The authenticated caller; every use case on someone's behalf starts here."""
    if ctx.identity is None or valid_uuid(ctx.identity.user_id) is None:
        raise Unauthorized("send an access token: Authorization: Bearer <token>")
    return ctx.identity


class Accounts:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 throttle: LoginThrottle) -> None:
        self.settings = settings
        self.sessions = sessions
        self.throttle = throttle

    def user_out(self, row: Row[Any]) -> UserOut:
        account = (TelegramAccount(id=row.telegram_id, username=row.telegram_username)
                   if row.telegram_id is not None else None)
        return UserOut(id=row.id, email=row.email, display_name=row.display_name,
                       roles=list(platform_roles(row.email, self.settings.admin_emails)),
                       locale=row.locale, telegram=account, created_at=row.created_at)

    async def _issue(self, session: AsyncSession, row: Row[Any],
                     family_id: str | None = None) -> TokenPairOut:
        """A new access token and a refresh token stored (hashed) in ``family_id``."""
        family_id = family_id or new_id()
        refresh = tokens.issue_refresh_token(self.settings, row.id, family_id)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.refresh_token_ttl_seconds)
        await session.execute(insert(refresh_tokens).values(
            id=new_id(), token_hash=tokens.digest(refresh), family_id=family_id,
            user_id=row.id, expires_at=expires))
        out = self.user_out(row)
        access = tokens.issue_access_token(self.settings, row.id, tuple(out.roles))
        return TokenPairOut(user=out, access_token=access, refresh_token=refresh,
                            expires_in=self.settings.access_token_ttl_seconds)

    async def register(self, ctx: RequestContext, data: RegisterIn) -> TokenPairOut:
        email = str(data.email).lower()
        password_hash = await passwords.hash_password(data.password)
        async with UnitOfWork(self.sessions, PRODUCER, ctx) as uow:
            row = (await uow.session.execute(
                insert(users).values(id=new_id(), email=email, password_hash=password_hash,
                                     display_name=data.display_name)
                .on_conflict_do_nothing().returning(*users.c))).first()
            if row is None:
                raise Conflict("an account with this email already exists", slug="email-taken")
            uow.publish("user.registered", {"user_id": row.id, "email": email,
                                            "display_name": row.display_name},
                        aggregate_id=row.id)
            return await self._issue(uow.session, row)

    async def login(self, ctx: RequestContext, data: LoginIn) -> TokenPairOut:
        email = str(data.email).lower()
        await self.throttle.check(email, ctx.client_ip)
        async with self.sessions() as session:
            row = (await session.execute(select(users).where(users.c.email == email))).first()
        stored = row.password_hash if row is not None else None
        if not await passwords.verify_password(stored, data.password) or row is None:
            await self.throttle.failed(email, ctx.client_ip)
            raise Unauthorized("wrong email or password", slug="invalid-credentials")
        await self.throttle.succeeded(email)
        async with self.sessions.begin() as session:
            if passwords.needs_rehash(row.password_hash):
                await session.execute(update(users).where(users.c.id == row.id).values(
                    password_hash=await passwords.hash_password(data.password)))
            return await self._issue(session, row)

    def _verify_telegram(self, data: TelegramLoginIn) -> None:
        telegram.verify(data.model_dump(exclude_none=True),
                        reveal(self.settings.telegram_bot_token),
                        time.time(), self.settings.telegram_auth_max_age_seconds)

    async def telegram_login(self, ctx: RequestContext, data: TelegramLoginIn) -> TokenPairOut:
        self._verify_telegram(data)
        name = " ".join(p for p in (data.first_name, data.last_name) if p) or "Telegram user"
        async with UnitOfWork(self.sessions, PRODUCER, ctx) as uow:
            row = (await uow.session.execute(
                insert(users).values(id=new_id(), display_name=name[:100], telegram_id=data.id,
                                     telegram_username=data.username,
                                     telegram_photo_url=data.photo_url, telegram_chat_id=data.id)
                .on_conflict_do_nothing().returning(*users.c))).first()
            if row is not None:
                uow.publish("user.registered", {"user_id": row.id, "display_name": name,
                                                "telegram_id": data.id}, aggregate_id=row.id)
            else:
                row = (await uow.session.execute(
                    update(users).where(users.c.telegram_id == data.id)
                    .values(telegram_username=data.username, telegram_photo_url=data.photo_url)
                    .returning(*users.c))).one()
            return await self._issue(uow.session, row)

    async def link_telegram(self, ctx: RequestContext, data: TelegramLoginIn) -> UserOut:
        """Attach a Telegram account to the caller's (email) account."""
        me = caller(ctx)
        self._verify_telegram(data)
        async with UnitOfWork(self.sessions, PRODUCER, ctx) as uow:
            owner = await uow.session.scalar(
                select(users.c.id).where(users.c.telegram_id == data.id))
            if owner is not None and owner != me.user_id:
                raise Conflict("this Telegram account belongs to another user",
                               slug="telegram-taken")
            row = (await uow.session.execute(
                update(users).where(users.c.id == me.user_id)
                .values(telegram_id=data.id, telegram_username=data.username,
                        telegram_photo_url=data.photo_url, telegram_chat_id=data.id,
                        updated_at=func.now()).returning(*users.c))).first()
            if row is None:
                raise NotFound("the account no longer exists")
            if owner is None:
                uow.publish("user.updated", {"user_id": me.user_id, "changed": ["telegram"]},
                            aggregate_id=me.user_id)
            return self.user_out(row)

    async def refresh(self, ctx: RequestContext, token: str) -> TokenPairOut:
        """Rotate: the presented token is spent and a new one of its family is issued.

        Presenting a spent or revoked token revokes the whole family. Of two concurrent
        refreshes with one token, the conditional UPDATE lets at most one through; the other
        counts as reuse.
        """
        tokens.refresh_claims(self.settings, token)
        digest = tokens.digest(token)
        async with self.sessions.begin() as session:
            spent = (await session.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.token_hash == digest, refresh_tokens.c.used_at.is_(None),
                       refresh_tokens.c.revoked_at.is_(None),
                       refresh_tokens.c.expires_at > func.now())
                .values(used_at=func.now())
                .returning(refresh_tokens.c.user_id, refresh_tokens.c.family_id))).first()
            if spent is not None:
                row = (await session.execute(
                    select(users).where(users.c.id == spent.user_id))).one()
                return await self._issue(session, row, spent.family_id)
            known = (await session.execute(select(refresh_tokens).where(
                refresh_tokens.c.token_hash == digest))).first()
            reused = known is not None and (known.used_at or known.revoked_at) is not None
            if known is not None and reused:
                await self._revoke_family(session, known.family_id)
        if reused:
            raise Unauthorized("this refresh token was already used; every session of its "
                               "family is revoked; sign in again", slug="token-reused")
        raise Unauthorized("the refresh token is not valid", slug="invalid-token")

    @staticmethod
    async def _revoke_family(session: AsyncSession, family_id: str) -> None:
        await session.execute(update(refresh_tokens).where(
            refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=func.now()))

    async def logout(self, ctx: RequestContext, token: str) -> None:
        """Revoke the refresh token's family (idempotent). Access tokens expire on their own."""
        claims = tokens.refresh_claims(self.settings, token)
        async with self.sessions.begin() as session:
            await self._revoke_family(session, str(claims["fam"]))

    async def me(self, ctx: RequestContext) -> UserOut:
        me = caller(ctx)
        async with self.sessions() as session:
            row = (await session.execute(select(users).where(users.c.id == me.user_id))).first()
        if row is None:
            raise NotFound("the account no longer exists")
        return self.user_out(row)

    async def update_me(self, ctx: RequestContext, patch: ProfilePatch) -> UserOut:
        me = caller(ctx)
        given = patch.model_dump(exclude_unset=True)
        values = {k: v for k, v in given.items() if k in EDITABLE_PROFILE_FIELDS
                  and (v is not None or k == "locale")}
        async with UnitOfWork(self.sessions, PRODUCER, ctx) as uow:
            row = (await uow.session.execute(select(users).where(users.c.id == me.user_id)
                                             .with_for_update())).first()
            if row is None:
                raise NotFound("the account no longer exists")
            changed = sorted(k for k, v in values.items() if getattr(row, k) != v)
            if not changed:
                return self.user_out(row)
            row = (await uow.session.execute(
                update(users).where(users.c.id == me.user_id)
                .values(**{k: values[k] for k in changed}, updated_at=func.now())
                .returning(*users.c))).one()
            uow.publish("user.updated", {"user_id": me.user_id, "changed": changed},
                        aggregate_id=me.user_id)
            return self.user_out(row)

    async def telegram_chat_id(self, user_id: str) -> int | None:
        if valid_uuid(user_id) is None:
            return None
        async with self.sessions() as session:
            chat: int | None = await session.scalar(
                select(users.c.telegram_chat_id).where(users.c.id == user_id))
        return chat

    async def telegram_chat_changed(self, ctx: RequestContext, user_id: str, chat_id: int,
                                    reachable: bool, username: str | None = None) -> bool:
        """What the bot learnt of a user's chat: linked by a ``/start`` deep link or reachable
        again (``telegram_chat_id`` is the chat), or unreachable (``telegram_chat_id`` is
        cleared). An account without a Telegram id gets the chat's (a private chat's id is the
        user's Telegram id) unless another account has it, and ``user.updated`` says so.
        False when the account does not exist. Idempotent."""
        if valid_uuid(user_id) is None:
            return False
        async with UnitOfWork(self.sessions, PRODUCER, ctx) as uow:
            row = (await uow.session.execute(select(users.c.telegram_id).where(
                users.c.id == user_id).with_for_update())).first()
            if row is None:
                return False
            values: dict[str, Any] = {"telegram_chat_id": chat_id if reachable else None}
            if reachable and row.telegram_id is None and chat_id > 0:
                taken = await uow.session.scalar(
                    select(users.c.id).where(users.c.telegram_id == chat_id))
                if taken is None:
                    values.update(telegram_id=chat_id, telegram_username=username)
                    uow.publish("user.updated", {"user_id": user_id, "changed": ["telegram"]},
                                aggregate_id=user_id)
            await uow.session.execute(update(users).where(users.c.id == user_id)
                                      .values(**values, updated_at=func.now()))
        return True

