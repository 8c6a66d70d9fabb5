"""Shared pieces of the notification tests: the Bot API double, the consumer, the sender."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from cluster.settings import Settings
from messaging.consumer import ConsumerRuntime
from messaging.envelope import Envelope
from serve.notifications.domain import Limits
from serve.notifications.handlers import NotificationHandlers
from serve.notifications.limiter import Limiter, LocalLimiter, RedisLimiter
from serve.notifications.sender import Sender
from serve.notifications.telegram import BotGateway
from storage.engine import create_engine, sessionmaker
from tests.fakes.server import running
from tests.fakes.telegram_api import FakeTelegram, create_app


@pytest.fixture
def telegram() -> Iterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    with running(create_app(fake)) as url:
        yield fake, url


def envelope(event_type: str, data: dict[str, Any], producer: str = "event") -> Envelope:
    return Envelope(type=event_type, producer=producer, correlation_id=uuid.uuid4().hex,
                    data=data)


def new_user() -> tuple[str, int]:
    """A user id and their Telegram id (= their private chat's id)."""
    return str(uuid.uuid4()), int(uuid.uuid4().int % 10**9) + 10**9


def registered(user: str, telegram_id: int | None, name: str = "Ann") -> Envelope:
    return envelope("user.registered", {"user_id": user, "display_name": name,
                                        "telegram_id": telegram_id}, "user")


@dataclass
class Rig:
    settings: Settings
    consumer: ConsumerRuntime
    sender: Sender
    fake: FakeTelegram | None

    async def consume(self, *envelopes: Envelope) -> None:
        for e in envelopes:
            await self.consumer.process(e)

    async def drain(self) -> int:
        total = 0
        while (done := await self.sender.drain_once()) > 0:
            total += done
        return total


@asynccontextmanager
async def rig(settings: Settings, telegram: tuple[FakeTelegram, str] | None, *,
              per_second: int = 25, redis_url: str | None = None,
              guard_ms: int = 25) -> AsyncIterator[Rig]:
    settings = Settings.model_validate(settings.model_dump() | {
        "telegram_max_per_second": per_second, "jwt_secret": "notify-test-secret",
        **({"telegram_bot_token": telegram[0].token, "telegram_api_url": telegram[1]}
           if telegram else {})})
    engine = create_engine(settings, "notification")
    sessions = sessionmaker(engine)
    limits = Limits(per_second=per_second, guard_ms=guard_ms)
    limiter: Limiter = (RedisLimiter(redis_url, f"test-{uuid.uuid4().hex[:8]}", limits)
                        if redis_url else LocalLimiter(limits))
    bot = BotGateway(telegram[0].token, telegram[1]) if telegram else None
    sender = Sender(sessions, settings, bot, limiter)
    consumer = ConsumerRuntime("notification", sessions, NotificationHandlers().handlers())
    try:
        yield Rig(settings, consumer, sender, telegram[0] if telegram else None)
    finally:
        if bot is not None:
            await bot.close()
        if isinstance(limiter, RedisLimiter):
            await limiter.close()
        await engine.dispose()
