"""``afisha events dlq`` lists dead letters and requeues them, on both transports."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cluster.cli import app
from cluster.settings import Settings
from messaging import topology
from messaging.amqp import REASON_HEADER, to_message
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from serve.common.context import RequestContext
from storage.engine import create_engine, sessionmaker


@pytest.fixture(params=["rabbitmq", "embedded"])
async def settings(request: pytest.FixtureRequest,
                   messaging_settings: Settings) -> AsyncIterator[Settings]:
    values: dict[str, object] = {"amqp_exchange": f"afisha.cli.{uuid.uuid4().hex[:10]}"}
    if request.param == "rabbitmq":
        values["amqp_url"] = request.getfixturevalue("amqp_vhost_url")
    chosen = messaging_settings.model_copy(update=values)
    yield chosen
    if chosen.amqp_url:
        async with await aio_pika.connect(chosen.amqp_url) as connection:
            await topology.delete_all(await connection.channel(),
                                      topology.Names(chosen.amqp_exchange))


async def run(settings: Settings, *args: str) -> dict[str, dict[str, str]]:
    """The command's JSON output by message id (run in a thread: it has its own event loop)."""
    output = await asyncio.to_thread(run_sync, settings, "--json", *args)
    letters = [json.loads(line) for line in output.splitlines() if line.strip()]
    return {letter["message_id"]: letter for letter in letters}


def run_sync(settings: Settings, *args: str) -> str:
    env = {"AFISHA_DATABASE_URL": str(settings.database_url),
           "AFISHA_AMQP_EXCHANGE": settings.amqp_exchange,
           "AFISHA_AMQP_URL": settings.amqp_url or ""}
    result = CliRunner().invoke(app, ["events", "dlq", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


async def dead_letter(settings: Settings) -> Envelope:
    """A user.registered that the notification service gave up on."""
    engine = create_engine(settings, "user", pool_size=1)
    try:
        async with UnitOfWork(sessionmaker(engine), "user",
                              RequestContext(correlation_id="cid-cli")) as uow:
            envelope = uow.publish("user.registered", {"user_id": "u-cli", "display_name": "D"},
                                   aggregate_id="u-cli")
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE user_service.outbox SET sent_at = now() "
                                    "WHERE message_id = :m"), {"m": envelope.id})
            if not settings.amqp_url:
                await conn.execute(text(
                    "INSERT INTO notification_service.dead_letter "
                    "(message_id, type, envelope, reason, attempts) "
                    "VALUES (:m, :t, CAST(:e AS jsonb), 'KeyError: template', 5)"),
                    {"m": envelope.id, "t": envelope.type, "e": envelope.model_dump_json()})
    finally:
        await engine.dispose()
    if settings.amqp_url:
        names = topology.Names(settings.amqp_exchange)
        async with await aio_pika.connect(settings.amqp_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare_all(channel, names, settings.message_delivery_limit)
            dlx = await channel.get_exchange(names.dlx("notification"))
            await dlx.publish(to_message(envelope, {REASON_HEADER: "KeyError: template"}),
                              routing_key=envelope.type)
    return envelope


async def test_dlq_lists_then_requeues(settings: Settings) -> None:
    envelope = await dead_letter(settings)
    listed = await run(settings, "--service", "notification")
    assert listed[str(envelope.id)] == {**listed[str(envelope.id)], "service": "notification",
                                        "type": "user.registered", "reason": "KeyError: template",
                                        "correlation_id": "cid-cli"}
    assert str(envelope.id) in await run(settings)  # listing left it in place

    requeued = await run(settings, "--service", "notification", "--requeue")
    assert str(envelope.id) in requeued
    assert str(envelope.id) not in await run(settings, "--service", "notification")
    if settings.amqp_url:  # back on the notification queue
        names = topology.Names(settings.amqp_exchange)
        async with await aio_pika.connect(settings.amqp_url) as connection:
            queue = await (await connection.channel()).get_queue(names.queue("notification"))
            message = await queue.get(fail=False)
            assert message is not None and message.message_id == str(envelope.id)
            assert REASON_HEADER not in message.headers
            await message.ack()
    else:  # unsent again in its publisher's outbox
        engine = create_engine(settings, "user", pool_size=1)
        try:
            async with engine.connect() as conn:
                sent_at = await conn.scalar(text(
                    "SELECT sent_at FROM user_service.outbox WHERE message_id = :m"),
                    {"m": envelope.id})
        finally:
            await engine.dispose()
        assert sent_at is None
