"""Dependency probes for ``/actuator/health``: each returns ``{"status": "UP"|"DOWN", ...}``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

UP, DOWN = "UP", "DOWN"


async def probe(check: Callable[[], Awaitable[Any]], limit_s: float = 3.0) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        details = await asyncio.wait_for(check(), limit_s)
    except TimeoutError:
        return {"status": DOWN, "error": f"no answer within {limit_s:.0f}s"}
    except Exception as exc:
        return {"status": DOWN, "error": f"{type(exc).__name__}: {exc}"}
    result: dict[str, Any] = {"status": UP,
                              "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if isinstance(details, dict):
        result.update(details)
    return result


def overall(components: dict[str, dict[str, Any]]) -> str:
    return UP if all(c.get("status") == UP for c in components.values()) else DOWN


async def check_amqp(url: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=2)
    await connection.close()


async def check_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()
