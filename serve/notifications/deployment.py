"""Serve deployment of the notification service: typed async methods other deployments call."""

from __future__ import annotations

from typing import Any

from ray.serve.handle import DeploymentHandle

from serve.common.clients import ServiceClient
from serve.common.service import ServiceBase


class NotificationService(ServiceBase):
    service = "notification"

    def __init__(self, config: dict[str, Any], user: DeploymentHandle,
                 event: DeploymentHandle) -> None:
        super().__init__(config)
        self.user = ServiceClient("user", user)
        self.event = ServiceClient("event", event)

