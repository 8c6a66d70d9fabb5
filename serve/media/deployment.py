"""Serve deployment of the media service: typed async methods other deployments call."""

from __future__ import annotations

from typing import Any

from serve.common.service import ServiceBase


class MediaService(ServiceBase):
    service = "media"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)

