"""Serve deployment of the analytics service: typed async methods other deployments call."""

from __future__ import annotations

from typing import Any

from ray.serve.handle import DeploymentHandle

from messaging.catalogue import CONSUMES
from messaging.consumer import Handler
from serve.analytics.tracking import record_domain_event
from serve.common.clients import ServiceClient
from serve.common.service import ServiceBase
from serve.events.client import EventClient


class AnalyticsService(ServiceBase):
    service = "analytics"

    def __init__(self, config: dict[str, Any], event: DeploymentHandle) -> None:
        super().__init__(config)
        self.event = EventClient(ServiceClient("event", event,
                                               self.settings.service_call_timeout_seconds))

    def message_handlers(self) -> dict[str, Handler]:
        return dict.fromkeys(CONSUMES["analytics"], record_domain_event)
