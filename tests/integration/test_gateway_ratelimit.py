"""Rate limiting and the response cache on the real Redis (gateway app, no Ray)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import asyncio as aioredis

from cluster.ports import free_port
from cluster.settings import Settings
from serve.common.cache import EventCacheInvalidator
from serve.gateway.ratelimit import RedisLimiter
from serve.users import tokens
from tests.conftest import make_settings
from tests.integration.users_support import Absent, gateway


def limited(redis_url: str | None, **values: Any) -> Settings:
    base: dict[str, Any] = {"jwt_secret": "r" * 48, "redis_url": redis_url,
                            "redis_key_prefix": f"rl-{uuid.uuid4().hex[:12]}",
                            "rate_limit_auth_per_minute": 0, "rate_limit_reserve_per_minute": 0,
                            "rate_limit_default_per_minute": 0,
                            "response_cache_ttl_seconds": 0, "local_cache_ttl_seconds": 0}
    return make_settings(**{**base, **values})


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


async def statuses(http: Any, n: int, method: str = "POST", path: str = "/api/v1/auth/login",
                   **kw: Any) -> list[int]:
    return [(await http.request(method, path, json={}, **kw)).status_code for _ in range(n)]


async def test_over_the_limit_is_a_429_problem_with_retry_after_and_no_store(
        redis_url: str, redis: aioredis.Redis) -> None:
    settings = limited(redis_url, rate_limit_auth_per_minute=3)
    async with gateway(settings, Absent()) as http:
        assert await statuses(http, 3) == [422, 422, 422]
        refused = await http.post("/api/v1/auth/login", json={})
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["cache-control"] == "no-store"
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert refused.json()["type"].endswith("/rate-limited")
    assert len(refused.headers["x-correlation-id"]) == 32
    keys = [k async for k in redis.scan_iter(f"{settings.redis_key_prefix}:ratelimit:auth:*")]
    assert keys == [f"{settings.redis_key_prefix}:ratelimit:auth:ip:127.0.0.1".encode()]


async def test_budgets_are_separate_and_per_user_when_a_token_is_sent(redis_url: str) -> None:
    settings = limited(redis_url, rate_limit_auth_per_minute=1,
                       rate_limit_reserve_per_minute=1, rate_limit_default_per_minute=2)
    alice = {"Authorization": f"Bearer {tokens.issue_access_token(settings, 'alice')}"}
    bob = {"Authorization": f"Bearer {tokens.issue_access_token(settings, 'bob')}"}
    reserve = "/api/v1/events/e1/registrations"
    async with gateway(settings, Absent()) as http:
        assert await statuses(http, 2) == [422, 429]
        # The route exists (no body: 422); the second try is over the reserve budget.
        assert await statuses(http, 2, path=reserve, headers=alice) == [422, 429]
        assert await statuses(http, 3, "GET", "/api/v1/nothing", headers=alice) == \
            [404, 404, 429]
        assert await statuses(http, 2, "GET", "/api/v1/nothing", headers=bob) == [404, 404]
        assert await statuses(http, 1, "GET", "/api/v1/nothing") == [404]
        assert (await http.get("/actuator/prometheus")).status_code == 200


async def test_webhooks_have_a_budget_per_provider_and_spend_no_ip_budget(
        redis_url: str) -> None:
    settings = limited(redis_url, rate_limit_default_per_minute=1,
                       rate_limit_webhook_per_minute=3)
    async with gateway(settings, Absent()) as http:
        sandbox = await statuses(http, 4, "POST", "/api/v1/webhooks/sandbox")
        yookassa = await statuses(http, 1, "POST", "/api/v1/webhooks/yookassa")
        after = await statuses(http, 2, "GET", "/api/v1/nothing")
    assert sandbox[:3] != [429] * 3 and sandbox[3] == 429  # the provider's own budget
    assert yookassa[0] != 429  # another provider's budget is its own
    assert after == [404, 429]  # this IP's budget was untouched by the webhooks


async def test_two_gateway_replicas_share_one_limit(redis_url: str) -> None:
    settings = limited(redis_url, rate_limit_default_per_minute=4)
    async with gateway(settings, Absent()) as one, gateway(settings, Absent()) as two:
        codes = [(await (one if i % 2 else two).get("/api/v1/x")).status_code for i in range(6)]
    assert codes == [404, 404, 404, 404, 429, 429]


async def test_concurrent_hits_from_two_limiters_never_exceed_the_limit(redis_url: str) -> None:
    clients = [aioredis.from_url(redis_url) for _ in range(2)]
    limiters = [RedisLimiter(c, fail_open=False) for c in clients]
    key = f"rl-{uuid.uuid4().hex}:default:ip:1.2.3.4"
    try:
        decisions = await asyncio.gather(*(limiters[i % 2].hit(key, 10) for i in range(40)))
    finally:
        for limiter in limiters:
            await limiter.close()
    assert sum(d.allowed for d in decisions) == 10


async def test_without_redis_the_limit_is_kept_in_process() -> None:
    settings = limited(None, rate_limit_default_per_minute=2)
    async with gateway(settings, Absent()) as http:
        assert await statuses(http, 3, "GET", "/api/v1/x") == [404, 404, 429]


@pytest.mark.parametrize(("fail_open", "expected"), [(True, 404), (False, 503)])
async def test_redis_down_follows_the_fail_open_setting(fail_open: bool, expected: int) -> None:
    settings = limited(f"redis://127.0.0.1:{free_port()}/0", rate_limit_default_per_minute=1,
                       rate_limit_fail_open=fail_open)
    async with gateway(settings, Absent()) as http:
        codes = await statuses(http, 3, "GET", "/api/v1/x")
        last = await http.get("/api/v1/x")
    assert codes == [expected] * 3
    if not fail_open:
        assert last.headers["content-type"] == "application/problem+json"
        assert last.json()["type"].endswith("/rate-limiter-unavailable")


async def test_public_event_answers_are_cached_and_invalidated(redis_url: str) -> None:
    settings = limited(redis_url, response_cache_ttl_seconds=30)
    served: list[str] = []

    class Events:  # the event service behind GET /api/v1/events/{id}
        async def call(self, method: str, ctx: Any, event_id: str) -> dict[str, Any]:
            assert method == "get_event"
            served.append(event_id)
            return {"id": event_id, "version": len(served)}

    async with gateway(settings, Absent(), Events()) as http:
        first = await http.get("/api/v1/events/e1")
        second = await http.get("/api/v1/events/e1")
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
        assert second.json() == first.json() == {"id": "e1", "version": 1}

        token = tokens.issue_access_token(settings, "u1")
        personal = await http.get("/api/v1/events/e1", headers={"Authorization": f"Bearer {token}"})
        assert "x-cache" not in personal.headers and personal.json()["version"] == 2

        invalidator = EventCacheInvalidator(settings)
        await invalidator.invalidate("e1")
        await invalidator.close()
        third = await http.get("/api/v1/events/e1")
        assert third.headers["x-cache"] == "MISS" and third.json()["version"] == 3
        missing = await http.get("/api/v1/events/e1/nothing")
        assert missing.status_code in (401, 404)
    assert served == ["e1", "e1", "e1"]
