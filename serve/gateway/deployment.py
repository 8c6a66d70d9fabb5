"""The gateway ingress deployment: builds the FastAPI app inside the replica."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from cluster.settings import Settings, schema_of
from messaging.relay import asyncpg_dsn
from serve.common.clients import ServiceClient
from serve.common.logs import configure_logging
from serve.gateway.app import Unlabelled, create_app
from serve.gateway.changefeed import ReadChanges
from serve.gateway.services import Services
from storage.event import read_changes_channel


@serve.ingress()
class Gateway:
    async def __init__(  # type: ignore[misc]
        self, config: dict[str, Any], user: DeploymentHandle, event: DeploymentHandle,
        payment: DeploymentHandle, notification: DeploymentHandle, media: DeploymentHandle,
        analytics: DeploymentHandle,
    ) -> None:
        self.settings = Settings.from_runtime(config)
        configure_logging(self.settings.log_level)
        handles = {"user": user, "event": event, "payment": payment,
                   "notification": notification, "media": media, "analytics": analytics}
        timeout = self.settings.service_call_timeout_seconds
        self.services = Services(**{n: ServiceClient(n, h, timeout) for n, h in handles.items()})
        self.read_changes = read_changes(self.settings)
        if self.read_changes is not None:
            self.read_changes.start()

    def __serve_build_asgi_app__(self) -> Unlabelled:
        return Unlabelled(create_app(self.settings, self.services, self.read_changes))


def read_changes(settings: Settings) -> ReadChanges | None:
    """The feed of the event service's read changes, for the read cache (when it is on)."""
    if not settings.local_cache_ttl_seconds or not settings.local_cache_max_seconds:
        return None
    return ReadChanges(asyncpg_dsn(settings.database_url_for("event")),
                       read_changes_channel(schema_of("event")))
