"""Serve deployment of the user service: typed async methods other deployments call."""

from __future__ import annotations

from typing import Any

from serve.common.service import ServiceBase


class UserService(ServiceBase):
    service = "user"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)

