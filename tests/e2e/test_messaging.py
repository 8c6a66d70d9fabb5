"""Messaging inside the running platform (RabbitMQ): relay and consumers run in the replicas."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import text

from messaging.outbox import UnitOfWork
from serve.common.context import RequestContext
from storage.engine import create_engine, sessionmaker
from tests.conftest import make_settings
from tests.e2e.conftest import RunningPlatform

CONSUMERS = ("event", "payment", "notification", "analytics")


async def publish_and_wait_for_analytics(database_url: str) -> tuple[str, str]:
    settings = make_settings(database_url=database_url)
    user, analytics = create_engine(settings, "user"), create_engine(settings, "analytics")
    cid = f"e2e-{uuid.uuid4().hex[:8]}"
    try:
        ctx = RequestContext(correlation_id=cid)
        async with UnitOfWork(sessionmaker(user), "user", ctx) as uow:
            envelope = uow.publish("user.registered", {"user_id": cid, "display_name": "E2E"},
                                   aggregate_id=cid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            async with analytics.connect() as conn:
                row = (await conn.execute(text(
                    "SELECT type, correlation_id FROM analytics_service.domain_events "
                    "WHERE message_id = :m"), {"m": envelope.id})).first()
            if row is not None:
                return row.type, row.correlation_id
            await asyncio.sleep(0.1)
        raise AssertionError("analytics never recorded the event")
    finally:
        await user.dispose()
        await analytics.dispose()


def test_an_event_committed_by_user_is_recorded_by_analytics(
        platform: RunningPlatform, platform_database: str) -> None:
    event_type, cid = asyncio.run(publish_and_wait_for_analytics(platform_database))
    assert event_type == "user.registered" and cid.startswith("e2e-")


def test_health_and_metrics_show_outbox_lag_dead_letters_and_consumers(
        platform: RunningPlatform) -> None:
    with platform.client() as http:
        health = http.get("/actuator/health").json()
        metrics = http.get("/actuator/prometheus").text
    for service in CONSUMERS:
        messaging = health["services"][service]["components"]["messaging"]
        assert messaging["status"] == "UP" and messaging["transport"] == "rabbitmq"
        assert messaging["consumer"]["connected"] is True
        assert messaging["dead_letters"] == 0
        assert f'afisha_consumer_up{{service="{service}"}} 1.0' in metrics
    for service in ("user", "event", "payment"):
        outbox = health["services"][service]["components"]["messaging"]["outbox"]
        assert {"unsent", "oldest_age_seconds"} <= set(outbox)
        assert f'afisha_outbox_unsent{{service="{service}"}}' in metrics
