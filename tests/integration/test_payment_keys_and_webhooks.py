"""Idempotency keys and the sandbox's webhook delivery, on the real PostgreSQL and over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from sqlalchemy import func, select

from cluster.settings import Settings
from messaging.outbox import UnitOfWork
from serve.common.errors import Conflict, Unprocessable
from serve.payments import idempotency
from serve.payments.delivery import SandboxDeliverer
from serve.payments.providers import SandboxProvider
from storage.engine import create_engine, sessionmaker
from storage.payment import sandbox_webhooks
from tests.fakes.server import running
from tests.integration.messaging.conftest import eventually


@pytest.fixture
async def sessions(migrated_settings: Settings) -> AsyncIterator[Any]:
    engine = create_engine(migrated_settings, "payment", pool_size=10)
    yield sessionmaker(engine)
    await engine.dispose()


async def test_same_key_same_body_returns_the_first_response(sessions: Any) -> None:
    calls: list[int] = []

    async def operation(uow: UnitOfWork) -> dict[str, Any]:
        calls.append(1)
        return {"n": len(calls)}

    key = uuid.uuid4().hex

    def run(body: Any) -> Any:
        return idempotency.run_once(sessions, lambda: UnitOfWork(sessions, "payment"), "u1:op",
                                    key, body, operation)

    assert await run({"a": 1}) == {"n": 1}
    assert await run({"a": 1}) == {"n": 1}
    assert calls == [1]
    with pytest.raises(Unprocessable) as caught:
        await run({"a": 2})
    assert caught.value.slug == "idempotency-key-reused"


async def test_a_key_in_flight_is_a_conflict_and_errors_are_replayed(sessions: Any) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(uow: UnitOfWork) -> dict[str, Any]:
        started.set()
        await release.wait()
        raise Conflict("nothing is left to refund", slug="fully-refunded")

    key = uuid.uuid4().hex

    def run() -> Any:
        return idempotency.run_once(sessions, lambda: UnitOfWork(sessions, "payment"), "u1:op",
                                    key, {}, slow)

    first = asyncio.create_task(run())
    await started.wait()
    with pytest.raises(Conflict) as in_flight:
        await run()
    assert in_flight.value.slug == "idempotency-key-in-progress"
    release.set()
    with pytest.raises(Conflict):
        await first
    with pytest.raises(Conflict) as replayed:
        await run()
    assert replayed.value.slug == "fully-refunded"


class Receiver:
    """A webhook endpoint that refuses the first delivery and verifies every signature."""

    def __init__(self, provider: SandboxProvider) -> None:
        self.provider = provider
        self.received: list[bytes] = []
        self.refused = 0
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            await provider.verify_webhook(dict(request.headers), body, time.time())
            if self.refused == 0:
                self.refused += 1
                return Response(status_code=503)
            self.received.append(body)
            return Response(status_code=200)

        self.app = app
        self.url = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver(SandboxProvider("secret", "http://127.0.0.1", tolerance_s=300))
    with running(recv.app) as base_url:
        recv.url = f"{base_url}/hook"
        yield recv


async def test_sandbox_webhooks_are_delivered_signed_and_retried(
        sessions: Any, receiver: Receiver) -> None:
    deliverer = SandboxDeliverer(sessions, receiver.provider, receiver.url,
                                 logging.getLogger("test"))
    async with sessions() as session, session.begin():
        await session.execute(sandbox_webhooks.delete())
        await receiver.provider.checkout(session, "sbx_1", "succeeded", copies=1)
    async with httpx.AsyncClient() as client:
        assert await deliverer.deliver_due(client) == 2  # the first is refused, the second lands
        assert await deliverer.deliver_due(client) == 0  # the refused one waits out its backoff
        async with sessions() as session, session.begin():
            await session.execute(sandbox_webhooks.update()
                                  .where(sandbox_webhooks.c.delivered_at.is_(None))
                                  .values(next_attempt_at=func.now() - timedelta(seconds=1)))
        assert await deliverer.deliver_due(client) == 1
    assert len(receiver.received) == 2 and receiver.refused == 1
    async with sessions() as session:
        rows = (await session.execute(select(sandbox_webhooks.c.attempts,
                                             sandbox_webhooks.c.delivered_at)
                                      .order_by(sandbox_webhooks.c.id))).all()
    assert [r.attempts for r in rows] == [2, 1]
    assert all(r.delivered_at is not None for r in rows)


async def test_a_resting_deliverer_retries_when_the_backoff_ends_without_a_wake(
        sessions: Any, receiver: Receiver) -> None:
    deliverer = SandboxDeliverer(sessions, receiver.provider, receiver.url,
                                 logging.getLogger("test"), rest_seconds=3600)
    async with sessions() as session, session.begin():
        await session.execute(sandbox_webhooks.delete())
        await receiver.provider.checkout(session, "sbx_2", "succeeded", copies=1)
    running_deliverer = asyncio.create_task(deliverer.run())
    try:
        async def both_delivered() -> bool:
            return len(receiver.received) == 2

        await eventually(both_delivered, "the refused webhook's retry", limit=30)
    finally:
        running_deliverer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running_deliverer
    assert receiver.refused == 1 and len(receiver.received) == 2
