"""Dependency probes for ``/actuator/health``: each returns ``{"status": "UP"|"DOWN", ...}``.

A failed probe names the kind of failure only (``ConnectionRefusedError``); its text, which can
carry hosts, users or URLs, goes to the log, never into the public health body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from serve.common.logs import get_logger

UP, DOWN = "UP", "DOWN"
log = get_logger("health")


async def probe(check: Callable[[], Awaitable[Any]], limit_s: float = 3.0) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        details = await asyncio.wait_for(check(), limit_s)
    except TimeoutError:
        return {"status": DOWN, "error": f"no answer within {limit_s:.0f}s"}
    except Exception as exc:
        return failure(exc)
    result: dict[str, Any] = {"status": UP,
                              "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if isinstance(details, dict):
        result.update(details)
    return result


def failure(exc: BaseException) -> dict[str, Any]:
    log.warning("health probe failed: %s: %s", type(exc).__name__, exc)
    return {"status": DOWN, "error": type(exc).__name__}


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
