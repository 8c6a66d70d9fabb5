"""The notification sender at rest, on the real Postgres: it does not poll while its LISTEN
connection is up; a statement that queues rows wakes it, and a row due later is sent when due."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import func, insert, select

from cluster.settings import Settings, schema_of
from messaging.relay import asyncpg_dsn
from serve.notifications.sender import Sender
from storage.engine import create_engine
from storage.notification import notifications, queued_channel
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.messaging.conftest import eventually
from tests.integration.notify_support import new_user, registered, rig, telegram
from tests.integration.test_notifications import statuses

__all__ = ["telegram"]  # the Bot API double's fixture


def never_polling(settings: Settings) -> Settings:
    """Polls an hour apart: whatever the sender does within a test was woken, not polled."""
    return Settings.model_validate(settings.model_dump() | {
        "notification_poll_seconds": 3600, "listening_poll_seconds": 3600})


async def started_and_resting(sender: Sender) -> None:
    sender.start()

    async def resting() -> bool:
        return sender.listening and sender.resting

    await eventually(resting, "the sender to LISTEN and rest", limit=30)


async def test_rows_queued_on_another_connection_wake_a_resting_sender(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    user, chat = new_user()
    async with rig(never_polling(migrated_settings), telegram) as r:
        await started_and_resting(r.sender)
        await r.consume(registered(user, chat))  # the consumer's transaction queues a welcome

        async def sent() -> bool:
            return await statuses(migrated_settings, user) == ["sent"]

        try:
            await eventually(sent, "the welcome to be sent", limit=30)
        finally:
            await r.sender.close()
    assert len(telegram[0].sends(chat)) == 1


async def test_a_row_due_later_is_sent_when_due_without_a_poll(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    user, chat = new_user()
    async with rig(never_polling(migrated_settings), telegram) as r:
        await r.consume(registered(user, chat))
        await r.drain()  # the welcome; the chat is now known
        await started_and_resting(r.sender)
        engine = create_engine(migrated_settings, "notification")
        try:
            async with engine.begin() as conn:
                due_at = await conn.scalar(
                    insert(notifications).values(
                        recipient_id=uuid.UUID(user), template_key="announcement",
                        source_message_id=uuid.uuid4(), urgent=False,
                        payload={"type": "announcement", "text": "Doors open at seven"},
                        not_before=func.now() + timedelta(seconds=1.5))
                    .returning(notifications.c.not_before))

            async def sent_at() -> Any:
                async with engine.connect() as conn:
                    return await conn.scalar(select(notifications.c.sent_at).where(
                        notifications.c.recipient_id == uuid.UUID(user),
                        notifications.c.template_key == "announcement",
                        notifications.c.status == "sent"))

            when = await eventually(sent_at, "the announcement to be sent when due", limit=30)
        finally:
            await r.sender.close()
            await engine.dispose()
    assert when >= due_at
    assert telegram[0].sends(chat)[-1].params["text"] == "Doors open at seven"


async def test_only_statements_that_queue_a_row_announce_it(
        migrated_settings: Settings) -> None:
    heard: list[str] = []
    conn = await asyncpg.connect(asyncpg_dsn(migrated_settings.database_url_for("notification")))
    engine = create_engine(migrated_settings, "notification")
    try:
        await conn.add_listener(queued_channel(schema_of("notification")),
                                lambda *args: heard.append(args[2]))

        async def queue(status: str) -> None:
            async with engine.begin() as db:
                await db.execute(insert(notifications).values(
                    recipient_id=uuid.uuid4(), template_key="welcome",
                    source_message_id=uuid.uuid4(), payload={"type": "welcome"}, status=status))

        await queue("suppressed")
        await asyncio.sleep(0.5)
        assert heard == []
        await queue("queued")

        async def announced() -> bool:
            return len(heard) == 1

        await eventually(announced, "the queued row's announcement", limit=10)
    finally:
        await conn.close()
        await engine.dispose()
