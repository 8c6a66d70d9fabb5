"""One LISTEN connection kept open: reconnected when it drops, checked by a ``SELECT 1`` every
``keepalive_seconds`` (a dead peer is noticed then). Used by the outbox relay (to wake on new
rows) and by the gateway's read-change feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg


async def keep_listening(dsn: str, channel: str, on_notify: Callable[[str], None], *,
                         on_up: Callable[[], None], on_down: Callable[[], None],
                         keepalive_seconds: float, retry_seconds: float,
                         log: logging.Logger, server_settings: dict[str, str] | None = None
                         ) -> None:
    """Run until cancelled. ``on_notify(payload)`` for each notification; ``on_up`` once
    listening, ``on_down`` when the connection is gone (notifications may have been missed)."""
    def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        on_notify(payload)

    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=5, server_settings=server_settings)
            try:
                await conn.add_listener(channel, notified)
                on_up()
                while not conn.is_closed():
                    await asyncio.sleep(keepalive_seconds)
                    await conn.execute("SELECT 1", timeout=keepalive_seconds)
            finally:
                on_down()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("listener on %s reconnecting: %s", channel, exc)
        await asyncio.sleep(retry_seconds)
