"""Typed client of the notification service (``serve.notifications.deployment``).

It has only the methods every service has so far (health, messaging status).
"""

from __future__ import annotations

from serve.common.clients import ClientBase


class NotificationClient(ClientBase):
    pass
