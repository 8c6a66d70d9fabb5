"""RabbitMQ topology, declared by code at start (idempotent; publishers and consumers both call it).

- a durable topic exchange (``settings.amqp_exchange``); routing key = event type;
- per consuming service a quorum queue ``<exchange>.<service>`` bound to exactly the routing keys
  of ``catalogue.CONSUMES[service]``, with a delivery limit;
- per consuming service a dead-letter exchange ``<exchange>.<service>.dlx`` (fanout) and queue
  ``<exchange>.<service>.dlq``.

Publishers declare the consumers' queues too, so no event is published before its queues exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange
from aiormq.abc import FieldTable

from messaging.catalogue import CONSUMES


@dataclass(frozen=True)
class Names:
    exchange: str

    def queue(self, service: str) -> str:
        return f"{self.exchange}.{service}"

    def dlx(self, service: str) -> str:
        return f"{self.exchange}.{service}.dlx"

    def dlq(self, service: str) -> str:
        return f"{self.exchange}.{service}.dlq"


def queue_arguments(names: Names, service: str, delivery_limit: int) -> FieldTable:
    return {"x-queue-type": "quorum", "x-dead-letter-exchange": names.dlx(service),
            "x-delivery-limit": delivery_limit}


async def declare_exchange(channel: AbstractChannel, names: Names) -> AbstractExchange:
    return await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.TOPIC,
                                          durable=True)


async def declare_consumer(channel: AbstractChannel, names: Names, service: str,
                           delivery_limit: int) -> None:
    """The queue, bindings, dead-letter exchange and queue of one consuming service."""
    exchange = await declare_exchange(channel, names)
    dlx = await channel.declare_exchange(names.dlx(service), aio_pika.ExchangeType.FANOUT,
                                         durable=True)
    dlq = await channel.declare_queue(names.dlq(service), durable=True,
                                      arguments={"x-queue-type": "quorum"})
    await dlq.bind(dlx, routing_key="#")
    queue = await channel.declare_queue(names.queue(service), durable=True,
                                        arguments=queue_arguments(names, service, delivery_limit))
    for key in CONSUMES[service]:
        await queue.bind(exchange, routing_key=key)


async def declare_all(channel: AbstractChannel, names: Names, delivery_limit: int) -> None:
    for service in CONSUMES:
        await declare_consumer(channel, names, service, delivery_limit)


async def delete_all(channel: AbstractChannel, names: Names) -> None:
    """Remove everything ``declare_all`` made (tests and benchmarks clean up with it)."""
    for service in CONSUMES:
        await channel.queue_delete(names.queue(service))
        await channel.queue_delete(names.dlq(service))
        await channel.exchange_delete(names.dlx(service))
    await channel.exchange_delete(names.exchange)
