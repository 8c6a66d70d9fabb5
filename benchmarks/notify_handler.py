"""CPU the notification consumer spends per reservation of a flash sale.

A sale's reservations reach the Notification service as ``registration.created`` (paid,
pending) followed by ``payment.created`` (the Pay link). This applies N such pairs through the
production consumer (``ConsumerRuntime.process_batch``, batches as the AMQP consumer delivers
them) and reports this process's CPU ms per reservation and the wall time, for buyers of whom a
given share has a linked Telegram chat (most buyers of a sale have none).

    python benchmarks/notify_handler.py [--reservations 2000] [--with-chat 0.1] [--batch 50]

Needs PostgreSQL (AFISHA_TEST_DATABASE_URL, default postgres@127.0.0.1:5432). A temporary
database is created and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg

from benchmarks.notify_fanout import scratch_database
from cluster.settings import Settings
from messaging.consumer import ConsumerRuntime
from messaging.envelope import Envelope
from serve.notifications.handlers import NotificationHandlers
from storage.engine import create_engine, sessionmaker


def sale(count: int, with_chat: float) -> tuple[list[Envelope], list[tuple[uuid.UUID, int]]]:
    """Registration and payment events of ``count`` reservations of one event, interleaved
    as a sale publishes them (a run of registrations, then their payments)."""
    event_id, org = str(uuid.uuid4()), str(uuid.uuid4())
    chats: list[tuple[uuid.UUID, int]] = []
    created: list[Envelope] = []
    paid: list[Envelope] = []
    base = 7_000_000_000 + uuid.uuid4().int % 10**9 * 100
    for i in range(count):
        user, reg = uuid.uuid4(), str(uuid.uuid4())
        if i < count * with_chat:
            chats.append((user, base + i))
        created.append(Envelope(type="registration.created", producer="event",
                                correlation_id="bench", data={
                                    "registration_id": reg, "event_id": event_id,
                                    "organization_id": org, "ticket_type_id": str(uuid.uuid4()),
                                    "user_id": str(user), "quantity": 1,
                                    "status": "pending_payment", "amount": 150000,
                                    "currency": "RUB", "payment_mode": "full",
                                    "expires_at": "2030-01-01T18:00:00+03:00"}))
        paid.append(Envelope(type="payment.created", producer="payment", correlation_id="bench",
                             data={"payment_id": str(uuid.uuid4()), "registration_id": reg,
                                   "event_id": event_id, "user_id": str(user), "kind": "full",
                                   "amount": 150000, "currency": "RUB",
                                   "confirmation_url": f"https://pay.example/{reg}"}))
    return created + paid, chats


async def run(settings: Settings, count: int, with_chat: float, batch: int) -> dict[str, Any]:
    envelopes, chats = sale(count, with_chat)
    dsn = settings.database_url_for("notification").replace("postgresql+asyncpg://",
                                                             "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("chats", schema_name="notification_service",
                                         columns=["user_id", "chat_id"], records=chats)
    finally:
        await conn.close()
    engine = create_engine(settings, "notification")
    consumer = ConsumerRuntime("notification", sessionmaker(engine),
                               NotificationHandlers().handlers())
    try:
        await consumer.process_batch(envelopes[:2])  # connections and statements warm
        rest = envelopes[2:]
        cpu0, t0 = time.process_time(), time.perf_counter()
        for start in range(0, len(rest), batch):
            await consumer.process_batch(rest[start:start + batch])
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        conn = await asyncpg.connect(dsn)
        try:
            by_status = dict(await conn.fetch(
                "SELECT status, count(*) FROM notification_service.notifications "
                "GROUP BY status"))
        finally:
            await conn.close()
    finally:
        await engine.dispose()
    reservations = len(rest) / 2
    return {"reservations": count, "with_chat": with_chat, "batch": batch,
            "cpu_ms_per_reservation": round(cpu / reservations * 1000, 3),
            "wall_ms_per_reservation": round(wall / reservations * 1000, 3),
            "notifications_by_status": {str(k): int(v) for k, v in by_status.items()}}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reservations", type=int, default=2000)
    parser.add_argument("--with-chat", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    async with scratch_database("afisha_bench_nhandler") as settings:
        print(json.dumps(await run(settings, args.reservations, args.with_chat, args.batch),
                         indent=2), flush=True)

if __name__ == "__main__":
    asyncio.run(main())
