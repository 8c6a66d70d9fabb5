"""The gateway ingress deployment: builds the FastAPI app inside the replica."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from cluster.settings import Settings
from serve.common.clients import ServiceClient
from serve.common.logs import configure_logging
from serve.gateway.app import create_app
from serve.gateway.services import Services


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

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.settings, self.services)
