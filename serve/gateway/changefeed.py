"""What changed in the event service's reads, as Postgres announces it to a gateway replica.

Triggers on the event service's tables (migration ``event_0004``) send ``e:<ids>`` when what an
event shows changes (the event or its ticket types) and ``s:<ids>`` when its seats change
(registrations, holds); ``*`` stands for any event. Each gateway replica keeps one connection
that LISTENs on that channel and tells its subscribers (the replica's read cache).

Notifications sent while the connection is down are lost: subscribers are told the feed was
lost (they stop trusting what they kept) and, while it is down, that it is not listening (they
keep answers only briefly). The connection is ``messaging.listen.keep_listening``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from messaging.listen import keep_listening
from serve.common.logs import get_logger

log = get_logger("gateway.changes")
KINDS = ("e", "s")
APPLICATION = "afisha-gateway-read-changes"  # the connection's application_name


class ChangeSubscriber(Protocol):
    def changed(self, kind: str, event_ids: list[str] | None) -> None:
        """``kind`` "e" (what the events show) or "s" (their seats); ``None``: any event."""

    def feed_lost(self) -> None:
        """Notifications may have been missed."""


def parse(payload: str) -> tuple[str, list[str] | None] | None:
    """``("e" | "s", ids or None for any)`` of a notification, ``None`` if it is not one."""
    kind, _, ids = payload.partition(":")
    if kind not in KINDS or not ids:
        return None
    if ids == "*":
        return kind, None
    return kind, ids.split(",")


class ReadChanges:
    def __init__(self, dsn: str, channel: str, keepalive_seconds: float = 5.0,
                 retry_seconds: float = 1.0) -> None:
        self.dsn = dsn
        self.channel = channel
        self.keepalive_seconds = keepalive_seconds
        self.retry_seconds = retry_seconds
        self.listening = False
        self._subscribers: list[ChangeSubscriber] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, subscriber: ChangeSubscriber) -> None:
        self._subscribers.append(subscriber)

    def start(self) -> None:
        """Start listening (from a running event loop); safe to call again."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _notified(self, payload: str) -> None:
        change = parse(payload)
        if change is None:
            log.warning("ignored a read-change notification: %r", payload[:200])
            return
        for subscriber in self._subscribers:
            subscriber.changed(*change)

    def _up(self) -> None:
        self.listening = True

    def _lost(self) -> None:
        self.listening = False
        for subscriber in self._subscribers:
            subscriber.feed_lost()

    async def _run(self) -> None:
        await keep_listening(self.dsn, self.channel, self._notified, on_up=self._up,
                             on_down=self._lost, keepalive_seconds=self.keepalive_seconds,
                             retry_seconds=self.retry_seconds, log=log,
                             server_settings={"application_name": APPLICATION})
