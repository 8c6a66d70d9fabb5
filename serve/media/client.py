"""Typed client of the media service (``serve.media.deployment.MediaService``).

It has only the methods every service has so far (health, messaging status).
"""

from __future__ import annotations

from serve.common.clients import ClientBase


class MediaClient(ClientBase):
    pass
