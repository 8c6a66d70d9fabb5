"""The embedded (in-cluster) transport: the relay hands each consuming service its messages.

Without a broker, the relay of the publishing service calls ``deliver`` on every consuming
service (through Serve handles in the cluster) with its messages. ``deliver`` returns once the
consumer has committed each message's effect and inbox row (or dead-lettered it after its
retries), so the relay marks the outbox rows sent only after every consumer has them, exactly
where the RabbitMQ relay waits for the publisher confirm.

Across the Serve hop a message travels as the envelope's JSON as stored in the outbox, as it
does to RabbitMQ: a list of bytes pickles at C speed, while pickling envelope objects called
back into Python for each of their fields (about 7 µs a message and consumer against 0.1).
The consumer parses each envelope once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cluster.settings import deployment_of
from messaging.catalogue import consumers_of
from messaging.transport import OutboxMessage

Deliver = Callable[[str, list[OutboxMessage]], Awaitable[None]]


class EmbeddedTransport:
    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self.last_error: str | None = None

    async def send(self, messages: Sequence[OutboxMessage]) -> None:
        batches: dict[str, list[OutboxMessage]] = {}
        for message in messages:
            for service in consumers_of(message.type):
                batches.setdefault(service, []).append(message)
        try:
            await asyncio.gather(*(self._deliver(s, b) for s, b in batches.items()))
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise
        self.last_error = None

    def status(self) -> dict[str, Any]:
        return {"consumers_reachable": self.last_error is None}

    async def close(self) -> None:
        return None


def serve_deliver(app_name: str) -> Deliver:
    """Deliver through the Serve handles of the consuming deployments of ``app_name``."""
    from ray import serve

    handles: dict[str, Any] = {}

    async def deliver(service: str, messages: list[OutboxMessage]) -> None:
        import ray

        if not ray.is_initialized():  # never let a handle lookup start a Ray of its own
            raise ConnectionError("not connected to the Ray cluster that runs the consumers")
        if service not in handles:
            handles[service] = serve.get_deployment_handle(deployment_of(service), app_name)
        await handles[service].deliver.remote([m.body for m in messages])

    return deliver
