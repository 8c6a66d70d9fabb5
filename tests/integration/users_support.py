"""Helpers for the user service tests: settings, the real service in-process, the gateway."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from cluster.settings import Settings
from messaging.outbox import outbox_for
from serve.common.context import Identity, RequestContext
from serve.gateway.app import create_app
from serve.gateway.services import Services
from serve.users import telegram
from serve.users.deployment import UserService
from serve.users.schemas import RegisterIn, TokenPairOut

BOT_TOKEN = "424242:integration-bot-token"
PASSWORD = "correct horse battery"


def user_settings(base: Settings, redis_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jwt_secret": "integration-secret-" + "x" * 32,
        "admin_emails": [f"admin-{uuid.uuid4().hex[:12]}@example.org"],
        "telegram_bot_token": BOT_TOKEN, "redis_url": redis_url,
        "redis_key_prefix": f"test-{uuid.uuid4().hex[:12]}",
        "rate_limit_auth_per_minute": 0, "rate_limit_reserve_per_minute": 0,
        "rate_limit_default_per_minute": 0, "response_cache_ttl_seconds": 0, **overrides}
    return Settings.model_validate(base.model_dump() | values)  # validated: secrets wrapped


def admin_email(settings: Settings) -> str:
    return settings.admin_emails[0]


def email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@example.org"


def ctx(identity: Identity | None = None, ip: str = "10.0.0.1") -> RequestContext:
    return RequestContext(identity=identity, client_ip=ip)


def identity_of(pair: TokenPairOut) -> Identity:
    return Identity(user_id=pair.user.id, roles=tuple(pair.user.roles))


async def register(service: UserService, address: str | None = None) -> TokenPairOut:
    data = RegisterIn(email=address or email(), password=PASSWORD, display_name="Tester")
    return await service.register(ctx(), data)


def widget(telegram_id: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": telegram_id, "first_name": "Tg", "last_name": "User",
                              "username": f"tg{telegram_id}", "auth_date": int(time.time()),
                              **overrides}
    return {**fields, "hash": telegram.sign(fields, BOT_TOKEN)}


async def outbox_count(service: UserService, event_type: str, aggregate_id: str) -> int:
    outbox = outbox_for("user")
    async with service.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.type == event_type, outbox.c.aggregate_id == aggregate_id)) or 0)


class LocalClient:
    """Calls a service object in this process the way ServiceClient calls a handle."""

    def __init__(self, name: str, target: Any) -> None:
        self.name = name
        self.target = target

    async def call(self, method: str, *args: Any) -> Any:
        return await getattr(self.target, method)(*args)


class Absent:
    async def call(self, method: str, *args: Any) -> Any:
        raise AssertionError(f"unexpected call {method}")


def gateway(settings: Settings, user: Any, event: Any = None) -> httpx.AsyncClient:
    services = Services(user=LocalClient("user", user),  # type: ignore[arg-type]
                        event=event or Absent(), payment=Absent(),  # type: ignore[arg-type]
                        notification=Absent(), media=Absent(),  # type: ignore[arg-type]
                        analytics=Absent())  # type: ignore[arg-type]
    app = create_app(settings, services)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def bearer(pair: TokenPairOut | dict[str, Any]) -> dict[str, str]:
    token = pair["access_token"] if isinstance(pair, dict) else pair.access_token
    return {"Authorization": f"Bearer {token}"}
