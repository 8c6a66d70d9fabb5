"""Telegram's limits across the whole cluster: Redis when configured, in-process otherwise.

The Redis script does the arithmetic of ``domain.LimiterState.acquire`` atomically on Redis's
own clock, so every replica (and a second sender after a failover) shares one budget: one message
a second per chat, 20 a minute per group, ``per_second`` in every wall-clock second and a
bot-wide pause after a 429.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from serve.common.logs import get_logger
from serve.notifications.domain import LimiterState, Limits, Reason

log = get_logger("notification.limiter")

# KEYS: prefix. ARGV: chat id, group (0/1), per second, chat interval ms, group per minute,
# guard ms. Returns {at, reason}, ``at`` in epoch ms on Redis's clock: reason '' reserved the
# slot at ``at`` (counted in the wall-clock second ``at`` falls in: send then, not before);
# 'pause', 'chat', 'group' reserved nothing (ask again at ``at``).
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local p = KEYS[1]
local chat, group = ARGV[1], ARGV[2] == '1'
local per_second, guard = tonumber(ARGV[3]), tonumber(ARGV[6])
local interval, per_minute = tonumber(ARGV[4]) + guard, tonumber(ARGV[5])
local pace = (1000 - guard) / per_second
local paused = tonumber(redis.call('GET', p .. ':pause') or '0')
if paused > now then return {math.ceil(paused), 'pause'} end
local ck = p .. ':chat:' .. chat
local last = redis.call('GET', ck)
if last and now - tonumber(last) < interval then
  return {math.ceil(tonumber(last) + interval), 'chat'}
end
local gk = p .. ':group:' .. chat
local window = 60000 + guard
if group then
  redis.call('ZREMRANGEBYSCORE', gk, '-inf', now - window)
  if redis.call('ZCARD', gk) >= per_minute then
    local oldest = redis.call('ZRANGE', gk, 0, 0, 'WITHSCORES')
    return {math.ceil(tonumber(oldest[2]) + window), 'group'}
  end
end
local slot = math.max(now, tonumber(redis.call('GET', p .. ':next') or '0'))
for i = 1, 1000 do
  local into = slot % 1000
  if into >= 1000 - guard then
    slot = slot + 1000 - into
  else
    local n = tonumber(redis.call('GET', p .. ':second:' .. math.floor(slot / 1000)) or '0')
    if n >= per_second then slot = slot + 1000 - into else break end
  end
end
local ahead = math.ceil(slot - now)
local sk = p .. ':second:' .. math.floor(slot / 1000)
redis.call('INCR', sk)
redis.call('PEXPIRE', sk, ahead + 3000)
redis.call('SET', p .. ':next', string.format('%.3f', slot + pace), 'PX', ahead + 3000)
redis.call('SET', ck, string.format('%.3f', slot), 'PX', ahead + interval + 1000)
if group then
  redis.call('ZADD', gk, slot, string.format('%.3f', slot))
  redis.call('PEXPIRE', gk, ahead + window + 1000)
end
return {math.ceil(slot), ''}
"""

PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untilms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untilms > current then redis.call('SET', KEYS[1], untilms, 'PX', tonumber(ARGV[1]) + 1000) end
return untilms
"""

PAUSED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if paused > now then return paused - now end
return 0
"""


class Limiter(Protocol):
    async def acquire(self, chat_id: int) -> tuple[int, Reason]:
        """``(at, "")``: a slot at epoch ms ``at`` is reserved; ``(at, reason)``: none, ask
        again at ``at``."""
        ...

    async def pause(self, retry_after_seconds: float) -> None: ...

    async def paused(self) -> bool: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LocalLimiter:
    """One process's limiter (no Redis configured: a single replica sends)."""

    def __init__(self, limits: Limits) -> None:
        self.state = LimiterState(limits)

    async def acquire(self, chat_id: int) -> tuple[int, Reason]:
        now = now_ms()
        wait, reason = self.state.acquire(now, chat_id)
        return now + wait, reason

    async def pause(self, retry_after_seconds: float) -> None:
        self.state.pause(now_ms(), retry_after_seconds)

    async def paused(self) -> bool:
        return self.state.paused(now_ms())


class RedisLimiter:
    """The cluster-wide limiter; falls back to the in-process one while Redis is down."""

    def __init__(self, url: str, prefix: str, limits: Limits) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(  # named as serve.common.redis names
            url, max_connections=32, timeout=10, client_name=f"afisha:{prefix}")
        self.redis = aioredis.Redis(connection_pool=pool)
        self.prefix = f"{prefix}:telegram"
        self.limits = limits
        self.fallback = LocalLimiter(limits)
        self._acquire = self.redis.register_script(ACQUIRE)
        self._pause = self.redis.register_script(PAUSE)
        self._paused = self.redis.register_script(PAUSED)

    async def acquire(self, chat_id: int) -> tuple[int, Reason]:
        lim = self.limits
        try:
            at, reason = await self._acquire(keys=[self.prefix], args=[
                chat_id, 1 if chat_id < 0 else 0, lim.per_second, lim.chat_interval_ms,
                lim.group_per_minute, lim.guard_ms])
        except (RedisError, OSError) as exc:
            log.warning("Redis limiter unavailable (%s): limiting in this process", exc)
            return await self.fallback.acquire(chat_id)
        text = reason.decode() if isinstance(reason, bytes) else str(reason)
        return int(at), text  # type: ignore[return-value]

    async def pause(self, retry_after_seconds: float) -> None:
        await self.fallback.pause(retry_after_seconds)
        try:
            await self._pause(keys=[f"{self.prefix}:pause"], args=[
                int(retry_after_seconds * 1000) + self.limits.guard_ms])
        except (RedisError, OSError) as exc:
            log.warning("Redis limiter unavailable for a pause: %s", exc)

    async def paused(self) -> bool:
        try:
            return int(await self._paused(keys=[f"{self.prefix}:pause"])) > 0
        except (RedisError, OSError):
            return await self.fallback.paused()

    async def close(self) -> None:
        await self.redis.aclose()


async def wait_for_slot(limiter: Limiter, chat_id: int, late_ms: int = 40,
                        meanwhile: Callable[[], Awaitable[None]] | None = None) -> None:
    """Block until a message to ``chat_id`` may go now (its slot is then taken).

    The wait ends at the slot's own moment, never before it, so a send counts in the
    wall-clock second its slot was counted in. A slot is given up (and a new one taken) when
    a 429 paused the bot in the meantime, or when this coroutine woke more than ``late_ms``
    after it (a busy loop): sending then could land in the next second's count. ``meanwhile``
    runs once, after the first slot is reserved and before waiting for it (the sender marks
    the row ``sending`` there, so the mark costs no extra delay)."""
    while True:
        at, reason = await limiter.acquire(chat_id)
        if not reason and meanwhile is not None:
            await meanwhile()
            meanwhile = None
        ahead = at - now_ms()
        if ahead > 0:
            await asyncio.sleep((ahead + 1) / 1000)
        if reason:
            continue
        if ahead > 0 and await limiter.paused():
            continue
        if now_ms() - at > late_ms:
            continue
        return
