"""Every service the gateway reaches, each behind its typed client."""

from __future__ import annotations

from serve.analytics.client import AnalyticsClient
from serve.common.clients import Caller, ClientBase
from serve.events.client import EventClient
from serve.media.client import MediaClient
from serve.notifications.client import NotificationClient
from serve.payments.client import PaymentClient
from serve.users.client import UserClient


class Services:
    """Built from one transport per service (``ServiceClient`` over a DeploymentHandle)."""

    def __init__(self, *, user: Caller, event: Caller, payment: Caller, notification: Caller,
                 media: Caller, analytics: Caller) -> None:
        self.user = UserClient(user)
        self.event = EventClient(event)
        self.payment = PaymentClient(payment)
        self.notification = NotificationClient(notification)
        self.media = MediaClient(media)
        self.analytics = AnalyticsClient(analytics)

    def items(self) -> list[tuple[str, ClientBase]]:
        return [(name, getattr(self, name)) for name in
                ("user", "event", "payment", "notification", "media", "analytics")]
