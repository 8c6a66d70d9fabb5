"""Serve deployment of the payment service: typed async methods other deployments call."""

from __future__ import annotations

from typing import Any

from ray.serve.handle import DeploymentHandle

from serve.common.clients import ServiceClient
from serve.common.service import ServiceBase


class PaymentService(ServiceBase):
    service = "payment"

    def __init__(self, config: dict[str, Any], event: DeploymentHandle) -> None:
        super().__init__(config)
        self.event = ServiceClient("event", event)

