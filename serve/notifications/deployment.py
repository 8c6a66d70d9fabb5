"""Serve deployment of the notification service: typed async methods other deployments call."""

from __future__ import annotations

from typing import Any

from ray.serve.handle import DeploymentHandle

from serve.common.clients import ServiceClient
from serve.common.service import ServiceBase
from serve.events.client import EventClient
from serve.users.client import UserClient


class NotificationService(ServiceBase):
    service = "notification"

    def __init__(self, config: dict[str, Any], user: DeploymentHandle,
                 event: DeploymentHandle) -> None:
        super().__init__(config)
        timeout = self.settings.service_call_timeout_seconds
        self.user = UserClient(ServiceClient("user", user, timeout))
        self.event = EventClient(ServiceClient("event", event, timeout))

