"""The sandbox provider's webhook sender: delivers queued notifications, retrying with backoff.

A checkout wakes it; at rest it waits until the earliest undelivered notification's next
attempt, at most ``rest_seconds``, rather than polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from serve.common.retry import backoff
from serve.payments.providers import SandboxProvider
from storage.payment import sandbox_webhooks

BATCH = 20


class SandboxDeliverer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider,
                 target_url: str, log: logging.Logger, rest_seconds: float = 30.0) -> None:
        self.sessions = sessions
        self.rest_seconds = rest_seconds
        self.provider = provider
        self.target_url = target_url
        self.log = log
        self.wake = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                self.wake.clear()
                try:
                    sent = await self.deliver_due(client)
                    wait = 0.0 if sent else await self.next_attempt_in()
                except Exception:
                    self.log.exception("sandbox webhook delivery failed; retrying")
                    wait = 0.5
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), wait)

    async def next_attempt_in(self) -> float:
        """Seconds until an undelivered notification is due, at most ``rest_seconds``."""
        async with self.sessions() as session:
            found = await session.scalar(
                select(func.extract("epoch", func.min(sandbox_webhooks.c.next_attempt_at)
                                    - func.now()))
                .where(sandbox_webhooks.c.delivered_at.is_(None)))
        return self.rest_seconds if found is None else min(max(float(found), 0.0),
                                                           self.rest_seconds)

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Send every due notification once (rows locked so replicas never send one twice)."""
        async with self.sessions() as session, session.begin():
            rows = (await session.execute(
                select(sandbox_webhooks).where(sandbox_webhooks.c.delivered_at.is_(None),
                                               sandbox_webhooks.c.next_attempt_at <= func.now())
                .order_by(sandbox_webhooks.c.id).limit(BATCH)
                .with_for_update(skip_locked=True))).mappings().all()
            for row in rows:
                error = await self._post(client, row["body"])
                if error is None:
                    values: dict[str, object] = {"delivered_at": func.now(),
                                                 "attempts": row["attempts"] + 1}
                else:
                    values = {"attempts": row["attempts"] + 1, "last_error": error,
                              "next_attempt_at": func.now() + timedelta(
                                  seconds=backoff(row["attempts"] + 1, 0.25, cap=60.0))}
                await session.execute(update(sandbox_webhooks)
                                      .where(sandbox_webhooks.c.id == row["id"]).values(**values))
            return len(rows)

    async def _post(self, client: httpx.AsyncClient, body: str) -> str | None:
        headers = self.provider.signed_headers(body, int(time.time()))
        try:
            response = await client.post(self.target_url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}"
