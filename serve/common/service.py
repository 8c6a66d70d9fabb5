"""Base of the six service deployments: settings, logging, database engine, health."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cluster.settings import Settings, schema_of
from messaging.consumer import Handler
from messaging.envelope import Envelope
from messaging.runtime import MessagingRuntime
from serve.common.context import RequestContext, bound
from serve.common.health import UP, overall, probe
from serve.common.logs import configure_logging, get_logger
from storage.engine import create_engine, ping, sessionmaker


def in_serve_replica() -> bool:
    """True inside a Serve replica (where the relay and consumer start by themselves)."""
    try:
        from ray import serve

        serve.get_replica_context()
        asyncio.get_running_loop()
    except Exception:
        return False
    return True


# Services whose work is downstream of a sale: they run at a lower CPU priority.
BACKGROUND_SERVICES = frozenset({"payment", "notification", "media", "analytics"})


def lower_priority(niceness: int) -> None:
    """Set this process's niceness, every thread of it (Linux sets it per thread)."""
    tasks = Path("/proc/self/task")
    ids = [int(t.name) for t in tasks.iterdir()] if tasks.exists() else [0]
    for tid in ids:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, niceness)


class ServiceBase:
    """Created inside the replica: engines and connections never cross a pickle boundary."""

    service: str = ""

    def __init__(self, config: dict[str, Any]) -> None:
        self.settings = Settings.from_runtime(config)
        configure_logging(self.settings.log_level)
        self.log = get_logger(self.service)
        if (self.service in BACKGROUND_SERVICES and self.settings.background_niceness
                and in_serve_replica()):
            lower_priority(self.settings.background_niceness)
        self.schema = schema_of(self.service)
        self.engine = create_engine(self.settings, self.service)
        self.sessions = sessionmaker(self.engine)
        self._messaging: MessagingRuntime | None = None
        if in_serve_replica():  # start on the replica's loop once __init__ has returned
            asyncio.get_running_loop().call_soon(self.start_messaging)

    def message_handlers(self) -> dict[str, Handler]:
        """Event type -> handler for the events this service consumes (subclasses override)."""
        return {}

    @property
    def messaging(self) -> MessagingRuntime:
        if self._messaging is None:
            self._messaging = MessagingRuntime(self.service, self.settings, self.sessions,
                                               self.message_handlers())
        return self._messaging

    def start_messaging(self) -> None:
        """Start the outbox relay and the consumer of this replica (idempotent)."""
        self.messaging.start()

    async def deliver(self, bodies: list[bytes]) -> None:
        """Embedded transport: apply messages from a publisher's relay, each the envelope's
        JSON (see messaging.embedded)."""
        self.start_messaging()
        await self.messaging.deliver([Envelope.from_json(body) for body in bodies])

    async def health(self, ctx: RequestContext) -> dict[str, Any]:
        """This service's own status and that of the dependencies it owns."""
        with bound(ctx):
            checks = self.dependency_checks()
            names = list(checks)
            results = await asyncio.gather(*(probe(checks[n]) for n in names))
            components = dict(zip(names, results, strict=True))
            status = overall(components)
            if status != UP:
                self.log.warning("health DOWN: %s", components)
            return {"status": status, "components": components}

    async def messaging_status(self, ctx: RequestContext) -> dict[str, Any]:
        """Outbox lag, dead letters and consumer state of this replica (for metrics)."""
        with bound(ctx):
            return await self.messaging.status()

    def dependency_checks(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        """Name -> probe; subclasses add their own (object store, broker consumers...)."""

        async def database() -> dict[str, Any]:
            await ping(self.engine, self.schema)
            return {"schema": self.schema}

        async def messaging() -> dict[str, Any]:
            return await self.messaging.status()

        return {"database": database, "messaging": messaging}

    async def close(self) -> None:
        if self._messaging is not None:
            await self._messaging.close()
        await self.engine.dispose()
