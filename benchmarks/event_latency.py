"""End-to-end domain-event latency and sustained rate, on RabbitMQ and on the embedded transport.

The event service publishes ``checkin.completed`` (consumed by analytics only) through the unit
of work; the outbox relay sends it; the analytics consumer records it as a time-series row.
Latency is measured from the publisher's commit returning to the consumer's commit returning
(both in this process, one clock). The relay and consumer are the production classes
(``MessagingRuntime``); the embedded transport is measured in-process, without the Serve hop
between replicas (about a millisecond per batch, DESIGN.md).

    python benchmarks/event_latency.py [--transport rabbitmq embedded] [--latency-events 500]
                                        [--rate-events 3000] [--publishers 8]

Needs PostgreSQL (AFISHA_TEST_DATABASE_URL, default postgres@127.0.0.1:5432) and RabbitMQ
(AFISHA_TEST_AMQP_URL, default guest@127.0.0.1:5672); a temporary database, exchange and queues
are created and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from cluster.settings import Settings
from messaging import topology
from messaging.envelope import Envelope
from messaging.outbox import UnitOfWork
from messaging.runtime import MessagingRuntime
from serve.analytics.tracking import record_domain_event
from serve.common.context import RequestContext
from storage import migrate
from storage.engine import create_engine, sessionmaker

PG = os.environ.get("AFISHA_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP = os.environ.get("AFISHA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Bench:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.committed: dict[uuid.UUID, float] = {}
        self.applied: dict[uuid.UUID, float] = {}
        self.event_engine = create_engine(settings, "event", pool_size=10)
        self.analytics_engine = create_engine(settings, "analytics", pool_size=5)
        self.analytics = MessagingRuntime(
            "analytics", settings, sessionmaker(self.analytics_engine),
            {"checkin.completed": record_domain_event}, embedded_deliver=self.deliver)
        self.event = MessagingRuntime("event", settings, sessionmaker(self.event_engine), {},
                                      embedded_deliver=self.deliver)
        consumer = self.analytics.consumer
        assert consumer is not None
        one, many = consumer.process, consumer.process_batch

        async def timed_one(envelope: Envelope) -> Any:
            outcome = await one(envelope)
            self.applied.setdefault(envelope.id, time.perf_counter())
            return outcome

        async def timed_many(envelopes: list[Envelope]) -> Any:
            outcomes = await many(envelopes)
            now = time.perf_counter()
            for envelope in envelopes:
                self.applied.setdefault(envelope.id, now)
            return outcomes

        consumer.process = timed_one  # type: ignore[method-assign]
        consumer.process_batch = timed_many  # type: ignore[method-assign]

    async def deliver(self, service: str, envelopes: list[Envelope]) -> None:
        if service == "analytics":
            await self.analytics.deliver(envelopes)

    async def start(self) -> None:
        self.analytics.start()
        self.event.start()
        await asyncio.sleep(1.0)  # consumer connected, relay listening

    async def publish(self, n: int) -> uuid.UUID:
        async with UnitOfWork(sessionmaker(self.event_engine), "event", RequestContext()) as uow:
            envelope = uow.publish("checkin.completed", {
                "registration_id": f"r{n}", "event_id": f"e{n % 50}", "user_id": f"u{n}",
                "checked_in_at": "2030-01-01T10:00:00Z"}, aggregate_id=f"r{n}")
        self.committed[envelope.id] = time.perf_counter()
        return envelope.id

    async def wait_applied(self, ids: list[uuid.UUID]) -> None:
        while any(i not in self.applied for i in ids):  # noqa: ASYNC110 (polls a dict)
            await asyncio.sleep(0.01)

    async def latency(self, count: int, rate: float) -> dict[str, float]:
        ids = []
        for n in range(count):
            ids.append(await self.publish(n))
            await asyncio.sleep(1 / rate)
        await self.wait_applied(ids)
        ms = [(self.applied[i] - self.committed[i]) * 1000 for i in ids]
        return {"latency_events": count, "offered_per_s": rate,
                "p50_ms": round(percentile(ms, 0.5), 1), "p99_ms": round(percentile(ms, 0.99), 1),
                "mean_ms": round(statistics.fmean(ms), 1)}

    async def sustained(self, count: int, publishers: int) -> dict[str, float]:
        ids: list[uuid.UUID] = []
        started = time.perf_counter()

        async def publisher(k: int) -> None:
            for n in range(k, count, publishers):
                ids.append(await self.publish(100_000 + n))

        await asyncio.gather(*(publisher(k) for k in range(publishers)))
        published = time.perf_counter()
        await self.wait_applied(ids)
        done = max(self.applied[i] for i in ids)
        ms = [(self.applied[i] - self.committed[i]) * 1000 for i in ids]
        return {"load_events": count, "publishers": publishers,
                "publish_per_s": round(count / (published - started)),
                "consumed_per_s": round(count / (done - started)),
                "p50_ms_under_load": round(percentile(ms, 0.5), 1),
                "p99_ms_under_load": round(percentile(ms, 0.99), 1)}

    async def close(self) -> None:
        await self.event.close()
        await self.analytics.close()
        await self.event_engine.dispose()
        await self.analytics_engine.dispose()


async def run(transport: str, database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    exchange = f"afisha.bench.{uuid.uuid4().hex[:8]}"
    settings = Settings.model_validate({
        "database_url": database_url, "amqp_exchange": exchange, "database_pool_size": 10,
        "amqp_url": AMQP if transport == "rabbitmq" else None})
    bench = Bench(settings)
    try:
        await bench.start()
        result = {"transport": transport,
                  **await bench.latency(args.latency_events, args.latency_rate),
                  **await bench.sustained(args.rate_events, args.publishers)}
    finally:
        await bench.close()
        if transport == "rabbitmq":
            async with await aio_pika.connect(AMQP) as connection:
                await topology.delete_all(await connection.channel(), topology.Names(exchange))
    return result


async def main(args: argparse.Namespace) -> None:
    name = f"afisha_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(PG)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    results = []
    try:
        await asyncio.to_thread(migrate.upgrade, Settings.model_validate({"database_url": url}))
        for transport in args.transport:
            result = await run(transport, url, args)
            results.append(result)
            print(json.dumps(result))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "event_latency.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'transport':<10} {'p50 ms':>7} {'p99 ms':>7} {'events/s':>9} "
          f"{'p50 load':>9} {'p99 load':>9}")
    for r in results:
        print(f"{r['transport']:<10} {r['p50_ms']:>7} {r['p99_ms']:>7} {r['consumed_per_s']:>9} "
              f"{r['p50_ms_under_load']:>9} {r['p99_ms_under_load']:>9}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", nargs="+", default=["rabbitmq", "embedded"],
                        choices=["rabbitmq", "embedded"])
    parser.add_argument("--latency-events", type=int, default=500)
    parser.add_argument("--latency-rate", type=float, default=50.0, help="events/s offered")
    parser.add_argument("--rate-events", type=int, default=3000)
    parser.add_argument("--publishers", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
