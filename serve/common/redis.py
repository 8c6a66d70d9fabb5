"""The one way the platform opens a Redis client: named after its key prefix, so an operator
(or the fault suite) can tell this platform's connections apart in ``CLIENT LIST``."""

from __future__ import annotations

from redis import asyncio as aioredis

from cluster.settings import Settings


def connect(settings: Settings, timeout: float) -> aioredis.Redis:
    if not settings.redis_url:
        raise LookupError("AFISHA_REDIS_URL is not set")
    return aioredis.from_url(settings.redis_url, socket_timeout=timeout,
                             socket_connect_timeout=timeout,
                             client_name=f"afisha:{settings.redis_key_prefix}")
