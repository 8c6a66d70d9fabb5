"""Accounts against the real Postgres and Redis: logins, throttling, refresh rotation, Telegram."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from cluster.ports import free_port
from cluster.settings import Settings
from serve.common.errors import Conflict, TooManyRequests, Unauthorized
from serve.common.problems import render
from serve.users.deployment import UserService
from serve.users.schemas import LoginIn, RegisterIn, TelegramLoginIn
from serve.users.throttle import LoginThrottle
from storage.user import refresh_tokens, users
from tests.integration.users_support import (
    PASSWORD,
    admin_email,
    ctx,
    email,
    identity_of,
    outbox_count,
    register,
    user_settings,
    widget,
)


@pytest.fixture(scope="module")
async def service(migrated_settings: Settings, redis_url: str) -> AsyncIterator[UserService]:
    settings = user_settings(migrated_settings, redis_url, login_failures_per_account=3,
                             login_failures_per_ip=5)
    svc = UserService(settings.to_runtime())
    yield svc
    await svc.close()


async def live_tokens(service: UserService, family_id: str) -> int:
    async with service.sessions() as session:
        rows = (await session.execute(select(refresh_tokens).where(
            refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.used_at.is_(None)))).all()
    return len(rows)


def family(service: UserService, token: str) -> str:
    from serve.users.tokens import refresh_claims
    return str(refresh_claims(service.settings, token)["fam"])


async def test_register_returns_the_contract_and_publishes_user_registered(
        service: UserService) -> None:
    address = email()
    pair = await service.register(ctx(), RegisterIn(email=address.upper(), password=PASSWORD,
                                                    display_name="Ann"))
    assert pair.user.email == address and pair.user.display_name == "Ann"
    assert pair.user.roles == [] and pair.token_type == "bearer" and pair.expires_in == 900
    assert await outbox_count(service, "user.registered", pair.user.id) == 1
    with pytest.raises(Conflict, match="already exists"):
        await register(service, address)
    assert await outbox_count(service, "user.registered", pair.user.id) == 1


async def test_admin_emails_get_the_admin_role(service: UserService) -> None:
    pair = await register(service, admin_email(service.settings))
    assert pair.user.roles == ["admin"]
    login = await service.login(ctx(), LoginIn(email=admin_email(service.settings),
                                               password=PASSWORD))
    assert identity_of(login).is_admin


async def test_unknown_user_and_wrong_password_get_the_same_error(service: UserService) -> None:
    pair = await register(service)
    assert pair.user.email is not None
    errors = []
    for address, password in ((pair.user.email, "wrong password!"), (email(), PASSWORD)):
        with pytest.raises(Unauthorized) as caught:
            await service.login(ctx(ip="10.1.0.1"), LoginIn(email=address, password=password))
        errors.append(render(caught.value))
    assert errors[0] == errors[1]
    assert (await service.login(ctx(), LoginIn(email=pair.user.email, password=PASSWORD))
            ).user.id == pair.user.id


async def test_failed_logins_are_throttled_per_account_even_with_the_right_password(
        service: UserService) -> None:
    pair = await register(service)
    address = str(pair.user.email)
    for n in range(3):
        with pytest.raises(Unauthorized):
            await service.login(ctx(ip=f"10.2.0.{n}"), LoginIn(email=address, password="nope-nope"))
    with pytest.raises(TooManyRequests) as caught:
        await service.login(ctx(ip="10.2.1.1"), LoginIn(email=address, password=PASSWORD))
    assert 1 <= caught.value.extensions["retry_after"] <= 900
    keys = [k async for k in service.throttle.redis.scan_iter(  # type: ignore[union-attr]
        f"{service.settings.redis_key_prefix}:login-failures:account:*")]
    assert keys, "the account counter lives in Redis"


async def test_failed_logins_are_throttled_per_ip(service: UserService) -> None:
    for _ in range(5):
        with pytest.raises(Unauthorized):
            await service.login(ctx(ip="10.3.0.9"), LoginIn(email=email(), password="nope-nope"))
    with pytest.raises(TooManyRequests):
        await service.login(ctx(ip="10.3.0.9"), LoginIn(email=email(), password="nope-nope"))
    with pytest.raises(Unauthorized):
        await service.login(ctx(ip="10.3.0.10"), LoginIn(email=email(), password="nope-nope"))


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(service: UserService) -> None:
    first = await register(service)
    second = await service.refresh(ctx(), first.refresh_token)
    assert second.refresh_token != first.refresh_token
    third = await service.refresh(ctx(), second.refresh_token)
    fam = family(service, third.refresh_token)
    assert fam == family(service, first.refresh_token)
    assert await live_tokens(service, fam) == 1

    with pytest.raises(Unauthorized) as caught:
        await service.refresh(ctx(), first.refresh_token)
    assert caught.value.slug == "token-reused"
    assert await live_tokens(service, fam) == 0
    with pytest.raises(Unauthorized):
        await service.refresh(ctx(), third.refresh_token)


async def test_two_parallel_refreshes_with_one_token_at_most_one_wins(
        service: UserService) -> None:
    for _ in range(5):
        pair = await register(service)
        results = await asyncio.gather(*(service.refresh(ctx(), pair.refresh_token)
                                          for _ in range(2)), return_exceptions=True)
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) <= 1
        assert all(isinstance(r, Unauthorized) for r in results if r not in winners)
        # The loser presented a spent token: that is reuse, so the family is revoked.
        assert await live_tokens(service, family(service, pair.refresh_token)) == 0


async def test_logout_revokes_and_is_idempotent(service: UserService) -> None:
    pair = await register(service)
    await service.logout(ctx(), pair.refresh_token)
    await service.logout(ctx(), pair.refresh_token)
    assert await live_tokens(service, family(service, pair.refresh_token)) == 0
    with pytest.raises(Unauthorized):
        await service.refresh(ctx(), pair.refresh_token)
    with pytest.raises(Unauthorized):
        await service.logout(ctx(), pair.access_token)


async def test_telegram_login_creates_once_and_gives_the_chat_id(service: UserService) -> None:
    tg = 7_000_000_000 + (hash(email()) % 1_000_000)
    first = await service.telegram_login(ctx(), TelegramLoginIn(**widget(tg)))
    again = await service.telegram_login(ctx(), TelegramLoginIn(**widget(tg, username="renamed")))
    assert first.user.id == again.user.id
    assert again.user.telegram is not None and again.user.telegram.username == "renamed"
    assert first.user.display_name == "Tg User" and first.user.email is None
    assert await outbox_count(service, "user.registered", first.user.id) == 1
    assert await service.telegram_chat_id(ctx(), first.user.id) == tg
    assert await service.telegram_chat_id(ctx(), "not-a-uuid") is None


async def test_tampered_and_stale_telegram_payloads_change_nothing(service: UserService) -> None:
    tg = 7_100_000_000 + (hash(email()) % 1_000_000)
    forged = {**widget(tg), "id": tg + 1}
    stale = widget(tg, auth_date=1_000_000_000)
    for payload in (forged, stale):
        with pytest.raises(Unauthorized):
            await service.telegram_login(ctx(), TelegramLoginIn(**payload))
    async with service.sessions() as session:
        found = await session.scalar(select(users.c.id).where(
            users.c.telegram_id.in_([tg, tg + 1])))
    assert found is None


async def test_linking_telegram_to_an_email_account(service: UserService) -> None:
    pair = await register(service)
    other = await register(service)
    tg = 7_200_000_000 + (hash(email()) % 1_000_000)
    linked = await service.link_telegram(ctx(identity_of(pair)), TelegramLoginIn(**widget(tg)))
    assert linked.telegram is not None and linked.telegram.id == tg
    assert (await service.telegram_login(ctx(), TelegramLoginIn(**widget(tg)))).user.id \
        == pair.user.id
    with pytest.raises(Conflict, match="another user"):
        await service.link_telegram(ctx(identity_of(other)), TelegramLoginIn(**widget(tg)))
    assert await service.telegram_chat_id(ctx(), other.user.id) is None
    assert await outbox_count(service, "user.updated", pair.user.id) == 1


@pytest.mark.parametrize("redis", ["none", "down"])
async def test_throttling_works_without_redis_and_when_redis_is_down(
        migrated_settings: Settings, redis: str) -> None:
    url = None if redis == "none" else f"redis://127.0.0.1:{free_port()}/0"
    settings = user_settings(migrated_settings, url, login_failures_per_account=2)
    throttle = LoginThrottle(settings)
    try:
        for _ in range(2):
            await throttle.check("victim@example.org", "10.9.9.9")
            await throttle.failed("victim@example.org", "10.9.9.9")
        with pytest.raises(TooManyRequests):
            await throttle.check("victim@example.org", "10.9.9.8")
        await throttle.check("someone@example.org", "10.9.9.9")
        await throttle.succeeded("victim@example.org")
        await throttle.check("victim@example.org", "10.9.9.9")
    finally:
        await throttle.close()
