"""Rate limiting at the gateway: per user (valid access token) or else per client IP.

Budgets per client and minute (``AFISHA_RATE_LIMIT_{AUTH,RESERVE,TRACK,DEFAULT}_PER_MINUTE``,
0 = off): ``auth`` for ``/api/v1/auth/*``, ``reserve`` for
``POST /api/v1/events/{id}/registrations``, ``track`` for ``POST /api/v1/analytics/track``,
``default`` for every other ``/api/v1`` route.
Provider webhooks (``POST /api/v1/webhooks/{provider}``, ``POST /api/v1/telegram/webhook``)
spend no client's budget: they have one per provider (``AFISHA_RATE_LIMIT_WEBHOOK_PER_MINUTE``),
so a provider's burst of notifications never uses up an IP's budget, and no IP can use up a
provider's. Operations routes (``/actuator/*``, docs) are not limited.

The algorithm is GCRA (a leaky bucket kept as one timestamp per key): a client may spend its
whole minute's budget at once, then one request every ``60 / limit`` seconds. With Redis the
check-and-update is one Lua script using Redis' own clock, so every gateway replica shares one
limit. Without Redis the same algorithm runs in the process.

Redis unreachable: ``AFISHA_RATE_LIMIT_FAIL_OPEN=true`` (default) lets requests through
unlimited and logs a warning; ``false`` answers 503 ``rate-limiter-unavailable`` until Redis
is back.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Protocol

from redis import asyncio as aioredis
from redis.exceptions import RedisError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cluster.settings import Settings
from serve.common.bounded import BoundedDict
from serve.common.errors import ProblemError, ServiceUnavailable, TooManyRequests
from serve.common.logs import get_logger
from serve.common.problems import render, status_of
from serve.common.redis import connect as redis_client
from serve.gateway.auth import bearer_subject, client_ip

log = get_logger("gateway.ratelimit")
PERIOD_MS = 60_000
_RESERVE = re.compile(r"^/api/v1/events/[^/]+/registrations/?$")
_WEBHOOK = re.compile(r"^/api/v1/(?:webhooks/(?P<provider>[^/]+)|telegram/webhook)/?$")

# KEYS[1] the client's key; ARGV[1] ms between requests; ARGV[2] burst (the per-minute limit).
# Returns {allowed (1/0), ms until the next request would be allowed}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * tonumber(ARGV[2])
if now < allow_at then return {0, allow_at - now} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, new_tat - now))
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_ms: float = 0.0

    @property
    def retry_after(self) -> int:
        """Whole seconds for the ``Retry-After`` header (at least 1)."""
        return max(1, math.ceil(self.retry_after_ms / 1000))


class Limiter(Protocol):
    async def hit(self, key: str, limit: int) -> Decision: ...

    async def close(self) -> None: ...


def _now_ms() -> float:
    return time.monotonic() * 1000


def _interval(limit: int) -> float:
    return PERIOD_MS / limit


class MemoryLimiter:
    """GCRA in the process (one gateway replica only)."""

    def __init__(self, max_clients: int = 100_000) -> None:
        # Each key's theoretical arrival time, forgotten once it is past (a fresh budget).
        self._tat: BoundedDict[str, float] = BoundedDict(max_clients, clock=_now_ms)

    async def hit(self, key: str, limit: int) -> Decision:
        now = _now_ms()
        interval = _interval(limit)
        tat = max(self._tat.get(key, now), now)
        allow_at = tat + interval - interval * limit
        if now < allow_at:
            return Decision(False, allow_at - now)
        self._tat.set(key, tat + interval, expires_at=tat + interval)
        return Decision(True)

    async def close(self) -> None:
        self._tat.clear()


class RedisLimiter:
    """GCRA in Redis: one atomic script call per request, shared by every replica."""

    def __init__(self, redis: aioredis.Redis, fail_open: bool) -> None:
        self.redis = redis
        self.fail_open = fail_open
        self._script = redis.register_script(_GCRA)

    async def hit(self, key: str, limit: int) -> Decision:
        try:
            allowed, wait_ms = await self._script(keys=[key], args=[_interval(limit), limit])
        except RedisError as exc:
            if self.fail_open:
                log.warning("rate limiter: Redis unavailable (%s); request let through", exc)
                return Decision(True)
            raise ServiceUnavailable("the rate limiter is unavailable; retry shortly",
                                     slug="rate-limiter-unavailable", retry_after=5) from exc
        return Decision(bool(allowed), float(wait_ms))

    async def close(self) -> None:
        await self.redis.aclose()


def build_limiter(settings: Settings) -> Limiter:
    if settings.redis_url:
        return RedisLimiter(redis_client(settings, 0.5), settings.rate_limit_fail_open)
    return MemoryLimiter(settings.memory_cache_entries)


def budget(method: str, path: str) -> str | None:
    """Which budget a request spends, or None for routes that are not limited."""
    if not path.startswith("/api/"):
        return None
    if path.startswith("/api/v1/auth/"):
        return "auth"
    if method == "POST" and _RESERVE.match(path):
        return "reserve"
    if method == "POST" and _WEBHOOK.match(path):
        return "webhook"
    if method == "POST" and path.rstrip("/") == "/api/v1/analytics/track":
        return "track"
    return "default"


def limit_of(settings: Settings, name: str) -> int:
    limit: int = getattr(settings, f"rate_limit_{name}_per_minute")
    return limit


class RateLimitMiddleware:
    """Pure ASGI: spend the request's budget before routing; 429 problem when it is gone."""

    def __init__(self, app: ASGIApp, settings: Settings, limiter: Limiter) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter
        self.prefix = f"{settings.redis_key_prefix}:ratelimit"

    def _client(self, scope: Scope) -> str:
        webhook = _WEBHOOK.match(scope["path"]) if scope["method"] == "POST" else None
        if webhook:
            return f"provider:{webhook['provider'] or 'telegram'}"
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization")
        user = bearer_subject(self.settings, auth.decode("latin-1") if auth else None)
        if user:
            return f"user:{user}"
        return f"ip:{client_ip(scope, self.settings.forwarded_for_hops) or 'unknown'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = budget(scope["method"], scope["path"]) if scope["type"] == "http" else None
        limit = limit_of(self.settings, name) if name else 0
        if not name or limit <= 0:
            await self.app(scope, receive, send)
            return
        try:
            decision = await self.limiter.hit(f"{self.prefix}:{name}:{self._client(scope)}", limit)
        except ProblemError as exc:
            await _problem(exc, scope)(scope, receive, send)
            return
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        refused = TooManyRequests(f"more than {limit} {name} requests per minute; retry in "
                                  f"{decision.retry_after} s", retry_after=decision.retry_after)
        await _problem(refused, scope)(scope, receive, send)


def _problem(exc: ProblemError, scope: Scope) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if "retry_after" in exc.extensions:
        headers["Retry-After"] = str(exc.extensions["retry_after"])
    return JSONResponse(render(exc, scope["path"]), status_code=status_of(exc)[0],
                        media_type="application/problem+json", headers=headers)
