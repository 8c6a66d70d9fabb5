"""Failed-login throttling per account and per client IP.

Counters of failures live in Redis when ``AFISHA_REDIS_URL`` is set (shared by every replica;
one Lua call per update), otherwise in the process. When Redis fails the in-process counters
take over, so throttling never switches off. A counter's window starts at its first failure;
at the limit, logins for that account (or from that IP) get 429 until the window ends, whatever
the password. A successful login clears the account's counter.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from cluster.settings import Settings
from serve.common.bounded import BoundedDict
from serve.common.errors import TooManyRequests
from serve.common.logs import get_logger
from serve.common.redis import connect as redis_client

log = get_logger("user.throttle")

# KEYS[1] counter; ARGV[1] window seconds. Returns the count after the increment.
_INCREMENT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
# KEYS: counters. Returns {count, ttl_seconds} per key.
_READ = """
local out = {}
for i, key in ipairs(KEYS) do
  out[#out + 1] = tonumber(redis.call('GET', key) or '0')
  out[#out + 1] = redis.call('TTL', key)
end
return out
"""


class MemoryCounters:
    def __init__(self, max_keys: int = 100_000) -> None:
        # key -> (failures, end of its window); a key leaves at the end of its window.
        self._counts: BoundedDict[str, tuple[int, float]] = BoundedDict(max_keys)

    def read(self, key: str) -> tuple[int, float]:
        count, until = self._counts.get(key, (0, 0.0))
        remaining = until - time.monotonic()
        if remaining <= 0:
            return 0, 0.0
        return count, remaining

    def increment(self, key: str, window: int) -> None:
        count, remaining = self.read(key)
        until = time.monotonic() + (remaining if count else window)
        self._counts.set(key, (count + 1, until), expires_at=until)

    def reset(self, key: str) -> None:
        self._counts.pop(key, None)


class LoginThrottle:
    def __init__(self, settings: Settings, redis: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.prefix = f"{settings.redis_key_prefix}:login-failures"
        self.redis = redis if redis is not None else (
            redis_client(settings, 1) if settings.redis_url else None)
        self.memory = MemoryCounters(settings.memory_cache_entries)

    def _keys(self, email: str, ip: str | None) -> list[tuple[str, int]]:
        digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]
        keys = [(f"{self.prefix}:account:{digest}", self.settings.login_failures_per_account)]
        if ip:
            keys.append((f"{self.prefix}:ip:{ip}", self.settings.login_failures_per_ip))
        return keys

    async def _read(self, keys: list[str]) -> list[tuple[int, float]]:
        if self.redis is not None:
            try:
                flat: list[Any] = await self.redis.eval(_READ, len(keys), *keys)
                return [(int(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]
            except RedisError as exc:
                log.warning("login throttle: Redis failed (%s); counting in process", exc)
        return [self.memory.read(key) for key in keys]

    async def check(self, email: str, ip: str | None) -> None:
        """429 when the account or the IP has used up its failed attempts."""
        keys = self._keys(email, ip)
        counts = await self._read([key for key, _ in keys])
        for (_, limit), (count, ttl) in zip(keys, counts, strict=True):
            if count >= limit:
                wait = max(1, math.ceil(ttl))
                raise TooManyRequests(
                    "too many failed logins; try again later", slug="login-throttled",
                    retry_after=wait)

    async def failed(self, email: str, ip: str | None) -> None:
        window = self.settings.login_failure_window_seconds
        for key, _ in self._keys(email, ip):
            if self.redis is not None:
                try:
                    await self.redis.eval(_INCREMENT, 1, key, window)
                    continue
                except RedisError as exc:
                    log.warning("login throttle: Redis failed (%s); counting in process", exc)
            self.memory.increment(key, window)

    async def succeeded(self, email: str) -> None:
        key = self._keys(email, None)[0][0]
        self.memory.reset(key)
        if self.redis is not None:
            try:
                await self.redis.delete(key)
            except RedisError as exc:
                log.warning("login throttle: Redis failed (%s)", exc)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
