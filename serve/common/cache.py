"""The invalidation side of the gateway's response cache of event answers.

The gateway (``serve.gateway.cache``) stores anonymous event answers under
``<prefix>:cache:events:<generation>:<digest>``; ``<prefix>:cache:events:gen`` holds the
generation. Incrementing it drops every cached answer at once. The event service holds an
``EventCacheInvalidator`` and calls it after committing a change to an event::

    invalidator = EventCacheInvalidator(settings)      # once, in the replica
    await invalidator.invalidate()                     # after each change

It lives here, below both, so the event service needs nothing from the gateway.
"""

from __future__ import annotations

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from cluster.settings import Settings
from serve.common.logs import get_logger
from serve.common.redis import connect as redis_client

log = get_logger("cache")


def generation_key(prefix: str) -> str:
    return f"{prefix}:cache:events:gen"


async def invalidate_events(redis: aioredis.Redis, prefix: str) -> None:
    """Drop every cached event answer (list and detail)."""
    await redis.incr(generation_key(prefix))


class EventCacheInvalidator:
    """What the Event service holds: a no-op unless the cache is configured."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.redis_key_prefix
        self.redis = (redis_client(settings, 1)
                      if settings.redis_url and settings.response_cache_ttl_seconds else None)

    async def invalidate(self, event_id: str | None = None) -> None:
        """Call after an event changes (``event_id`` is for the log; all entries go)."""
        if self.redis is None:
            return
        try:
            await invalidate_events(self.redis, self.prefix)
        except RedisError as exc:
            log.warning("cache invalidation for event %s failed: %s", event_id, exc)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
