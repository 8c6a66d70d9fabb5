"""Notification fan-out: an event with N confirmed registrations is cancelled.

The notification consumer applies ``event.cancelled`` (one transaction, rows inserted in
batches), then the production sender drains the queue to the Bot API double (tests/fakes), which
runs in its own process and records every call. Reported: the fan-out's commit time, the time
to the last delivery, messages/s against the configured limit, duplicates, lost messages,
seconds over the limit, and the sender's own CPU per 1,000 messages (this process only).

    python benchmarks/notify_fanout.py [--registrations 10000] [--limit 30]
                                       [--ceiling-limit 1000] [--ceiling-registrations 10000]

Needs PostgreSQL (AFISHA_TEST_DATABASE_URL, default postgres@127.0.0.1:5432); Redis
(AFISHA_TEST_REDIS_URL) is used for the limiter when reachable. A temporary database is
created and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from cluster.settings import Settings
from messaging.consumer import ConsumerRuntime
from messaging.envelope import Envelope
from serve.notifications.domain import Limits
from serve.notifications.handlers import NotificationHandlers
from serve.notifications.limiter import Limiter, LocalLimiter, RedisLimiter
from serve.notifications.sender import Sender
from serve.notifications.telegram import BotGateway
from storage import migrate
from storage.engine import create_engine, sessionmaker

PG = os.environ.get("AFISHA_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("AFISHA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RESULTS = Path(__file__).parent / "results"
TOKEN = "123456:BENCH-token"


def serve_fake(port: int) -> None:
    import sys

    import uvicorn

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests/
    from tests.fakes.telegram_api import FakeTelegram, create_app

    uvicorn.run(create_app(FakeTelegram(token=TOKEN)), host="127.0.0.1", port=port,
                log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_reachable() -> bool:
    parts = urlsplit(REDIS)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


async def seed(settings: Settings, event_id: uuid.UUID, count: int) -> None:
    """N confirmed registrations of one event, each user with a private chat."""
    conn = await asyncpg.connect(settings.database_url_for("notification").replace(
        "postgresql+asyncpg://", "postgresql://"))
    try:
        base = 5_000_000_000 + uuid.uuid4().int % 10**9 * 100
        users = [(uuid.uuid4(), base + i) for i in range(count)]
        await conn.copy_records_to_table(
            "chats", schema_name="notification_service", columns=["user_id", "chat_id"],
            records=users)
        await conn.copy_records_to_table(
            "tickets", schema_name="notification_service",
            columns=["registration_id", "event_id", "user_id", "status", "title"],
            records=[(uuid.uuid4(), event_id, u, "confirmed", "Bench") for u, _ in users])
    finally:
        await conn.close()


async def scenario(settings: Settings, count: int, limit: int, label: str) -> dict[str, Any]:
    port = free_port()
    fake = multiprocessing.get_context("spawn").Process(target=serve_fake, args=(port,),
                                                        daemon=True)
    fake.start()
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            try:
                await http.get(f"{url}/_calls")
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the Bot API double did not start")
    settings = settings.model_copy(update={
        "telegram_max_per_second": limit,
        "notification_batch_size": min(1000, max(100, limit * 2))})
    engine = create_engine(settings, "notification")
    sessions = sessionmaker(engine)
    limits = Limits(per_second=limit)
    limiter: Limiter = (RedisLimiter(REDIS, f"bench-{uuid.uuid4().hex[:8]}", limits)
                        if redis_reachable() else LocalLimiter(limits))
    bot = BotGateway(TOKEN, url, pool_size=64)
    sender = Sender(sessions, settings, bot, limiter)
    consumer = ConsumerRuntime("notification", sessions, NotificationHandlers().handlers())
    event_id = uuid.uuid4()
    try:
        await seed(settings, event_id, count)
        cancelled = Envelope(type="event.cancelled", producer="event", correlation_id="bench",
                             data={"event_id": str(event_id), "organization_id": str(uuid.uuid4()),
                                   "title": "Bench <b>night</b>", "starts_at": "2030-01-01"})
        started = time.perf_counter()
        await consumer.process(cancelled)
        fanout_s = time.perf_counter() - started
        cpu0, t0 = time.process_time(), time.perf_counter()
        while await sender.drain_once() > 0:
            pass
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        async with httpx.AsyncClient() as http:
            calls = (await http.get(f"{url}/_calls", timeout=60)).json()
    finally:
        await bot.close()
        if isinstance(limiter, RedisLimiter):
            await limiter.close()
        await engine.dispose()
        fake.terminate()
        fake.join(5)
    sends = [c for c in calls if c[1] == "sendMessage" and c[3] == 200]
    per_chat = Counter(c[2] for c in sends)
    per_second = Counter(int(c[0]) for c in sends)
    full = [n for s, n in per_second.items() if min(per_second) < s < max(per_second)]
    span = (max(c[0] for c in sends) - min(c[0] for c in sends)) if sends else 0.0
    return {
        "scenario": label, "registrations": count, "limit_per_second": limit,
        "limiter": "redis" if isinstance(limiter, RedisLimiter) else "in-process",
        "fanout_commit_s": round(fanout_s, 3), "time_to_last_delivery_s": round(elapsed, 2),
        "delivered": len(per_chat), "duplicates": sum(n - 1 for n in per_chat.values()),
        "lost": count - len(per_chat),
        # delivered over the whole drain (first send to the last answer)
        "messages_per_second": round(len(sends) / elapsed, 1) if elapsed else None,
        "of_limit": round(len(sends) / elapsed / limit, 3) if elapsed else None,
        "first_to_last_send_s": round(span, 2),
        "max_in_a_wall_clock_second": max(per_second.values()) if per_second else 0,
        "seconds_over_limit": sum(1 for n in per_second.values() if n > limit),
        "median_full_second": sorted(full)[len(full) // 2] if full else None,
        "sender_cpu_s_per_1000": round(cpu / max(1, len(sends)) * 1000, 3),
    }


@contextlib.asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[Settings]:
    """A migrated database of its own on PG's server (dropped afterwards), as settings."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(PG)
    settings = Settings.model_validate({
        "database_url": urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))})
    try:
        await asyncio.to_thread(migrate.upgrade, settings)
        yield settings
    finally:
        admin = await asyncpg.connect(PG)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrations", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--ceiling-limit", type=int, default=1000)
    parser.add_argument("--ceiling-registrations", type=int, default=10_000)
    args = parser.parse_args()
    async with scratch_database("afisha_bench_notify") as settings:
        results = [await scenario(settings, args.registrations, args.limit, "at the limit")]
        print(json.dumps(results[-1], indent=2), flush=True)
        if args.ceiling_registrations:
            results.append(await scenario(settings, args.ceiling_registrations,
                                          args.ceiling_limit, "sender ceiling"))
            print(json.dumps(results[-1], indent=2), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "notify_fanout.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
