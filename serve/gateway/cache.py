"""Response cache for anonymous ``GET /api/v1/events`` and ``GET /api/v1/events/{id}``.

Only with Redis (``AFISHA_REDIS_URL``) and ``AFISHA_RESPONSE_CACHE_TTL_SECONDS`` > 0, and only
in a gateway replica that does not hear the event service's read changes (its own read cache,
``serve.gateway.localcache``, keeps answers until they change when it does). Only requests
without an ``Authorization`` header and ``200 application/json`` answers are cached.

Keys: ``<prefix>:cache:events:gen`` holds a generation number; answers are stored under
``<prefix>:cache:events:<gen>:<sha256 of path?query>`` with the TTL.
``serve.common.cache.invalidate_events`` (what the Event service calls after a change)
increments the generation, so every cached answer is dropped at once, and an answer computed
while the generation changed is written under the old generation and never served.
"""

from __future__ import annotations

import hashlib
import re

from redis import asyncio as aioredis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from cluster.settings import Settings
from serve.common.cache import generation_key
from serve.common.logs import get_logger
from serve.common.redis import connect as redis_client
from serve.gateway.localcache import MAX_BODY, capture_response, send_cached

log = get_logger("gateway.cache")
CACHEABLE = re.compile(r"^/api/v1/events(/[^/]+)?/?$")

# KEYS[1] generation key; ARGV[1] key prefix; ARGV[2] request digest -> {generation, body}.
_LOOKUP = """
local gen = redis.call('GET', KEYS[1]) or '0'
return {gen, redis.call('GET', ARGV[1] .. gen .. ':' .. ARGV[2])}
"""


class ResponseCacheMiddleware:
    def __init__(self, app: ASGIApp, redis: aioredis.Redis, prefix: str, ttl: int) -> None:
        self.app = app
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl
        self._lookup = redis.register_script(_LOOKUP)

    @staticmethod
    def _cacheable(scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "GET":
            return False
        if any(name == b"authorization" for name, _ in scope.get("headers") or []):
            return False
        return bool(CACHEABLE.match(scope["path"]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._cacheable(scope):
            await self.app(scope, receive, send)
            return
        digest = hashlib.sha256(scope["path"].encode() + b"?" + scope["query_string"]).hexdigest()
        base = f"{self.prefix}:cache:events:"
        try:
            generation, body = await self._lookup(keys=[generation_key(self.prefix)],
                                                  args=[base, digest])
        except RedisError as exc:
            log.warning("response cache unavailable: %s", exc)
            await self.app(scope, receive, send)
            return
        if body is not None:
            await send_cached(send, body)
            return
        await self._fill(scope, receive, send, f"{base}{generation.decode()}:{digest}")

    async def _fill(self, scope: Scope, receive: Receive, send: Send, key: str) -> None:
        status, headers, body = await capture_response(self.app, scope, receive, send, miss=True)
        if (status == 200 and len(body) <= MAX_BODY
                and headers.get(b"content-type", b"").startswith(b"application/json")):
            try:
                await self.redis.set(key, body, ex=self.ttl)
            except RedisError as exc:
                log.warning("response cache unavailable: %s", exc)


def build_cache(settings: Settings) -> aioredis.Redis | None:
    if not settings.redis_url or not settings.response_cache_ttl_seconds:
        return None
    return redis_client(settings, 0.5)
