"""The embedded transport in Ray Serve: the relay in the user service's replica delivers through
Serve handles to the analytics replica, which records the event (no broker anywhere)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from cluster.ports import free_port
from cluster.settings import Settings
from messaging.outbox import UnitOfWork
from serve.common.context import RequestContext
from storage.engine import create_engine, sessionmaker
from tests.integration.messaging.conftest import eventually


@pytest.fixture(scope="module")
def embedded_app(ray_session: None, messaging_settings: Settings) -> Iterator[Settings]:
    from ray import serve

    from cluster.app import APP_NAME, build_app

    settings = messaging_settings.model_copy(update={
        "amqp_url": None, "jwt_secret": SecretStr("x" * 48),
        "ticket_signing_key": SecretStr("k" * 48), "payment_provider": "sandbox"})
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=False)
    try:
        yield settings
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()


async def test_committed_event_reaches_analytics_through_serve_handles(
        embedded_app: Settings) -> None:
    from ray import serve

    analytics = serve.get_deployment_handle("AnalyticsService", "afisha")
    user_engine = create_engine(embedded_app, "user")
    cid = f"embedded-{uuid.uuid4().hex[:8]}"
    try:
        async with UnitOfWork(sessionmaker(user_engine), "user",
                              RequestContext(correlation_id=cid)) as uow:
            envelope = uow.publish("user.registered", {"user_id": cid, "display_name": "Emb"},
                                   aggregate_id=cid)

        async def recorded() -> Any:
            async with user_engine.connect() as conn:  # same database, analytics' schema
                return (await conn.execute(text(
                    "SELECT correlation_id FROM analytics_service.domain_events "
                    "WHERE message_id = :m"), {"m": envelope.id})).first()

        row = await eventually(recorded, "analytics to record the event", limit=120)
        assert row.correlation_id == cid
        status = await analytics.messaging_status.remote(RequestContext())
        assert status["transport"] == "embedded" and status["status"] == "UP"
        assert status["consumer"]["applied"] >= 1 and status["dead_letters"] == 0
        health = await analytics.health.remote(RequestContext())
        assert health["components"]["messaging"]["status"] == "UP"
    finally:
        await user_engine.dispose()
