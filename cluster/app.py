"""The Serve application graph: gateway ingress plus one deployment per service.

Handles are wired as SPEC's synchronous-call table says: Event -> User, Media;
Payment -> Event; Notification -> User, Event; Analytics -> Event, User; the gateway reaches all.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment

from cluster.serve_config import DEPLOYMENTS, NODE_ENV, SERVE_ENV, deployment_options
from cluster.settings import APP_NAME, GATEWAY_DEPLOYMENT, Settings, deployment_of

if TYPE_CHECKING:
    from serve.common.service import ServiceBase

__all__ = ["APP_NAME", "DEPLOYMENTS", "NODE_ENV", "SERVE_ENV", "build_app", "from_environment"]


def from_environment(args: dict[str, Any]) -> Application:
    """The application builder of the Serve config file (``afisha config``): settings from the
    environment (the config's ``runtime_env`` plus the node's secrets), and from files in
    ``AFISHA_SECRETS_DIR`` when set (one file a setting, e.g. ``AFISHA_JWT_SECRET``)."""
    secrets_dir = os.environ.get("AFISHA_SECRETS_DIR") or None
    settings = Settings(_secrets_dir=secrets_dir) if secrets_dir else Settings()
    return build_app(settings)


def build_app(settings: Settings) -> Application:
    from serve.analytics.deployment import AnalyticsService
    from serve.events.deployment import EventService
    from serve.gateway.deployment import Gateway
    from serve.media.deployment import MediaService
    from serve.notifications.deployment import NotificationService
    from serve.payments.deployment import PaymentService
    from serve.users.deployment import UserService

    config = settings.to_runtime()

    def service(cls: type[ServiceBase]) -> Deployment:
        name = deployment_of(cls.service)
        return cast(Deployment, serve.deployment(cls)).options(
            name=name, **deployment_options(settings, name))

    user = service(UserService).bind(config)
    media = service(MediaService).bind(config, user)
    event = service(EventService).bind(config, user, media)
    payment = service(PaymentService).bind(config, event)
    analytics = service(AnalyticsService).bind(config, event, user)
    notification = service(NotificationService).bind(config, user, event, analytics)
    gateway = cast(Deployment, serve.deployment(Gateway)).options(
        name=GATEWAY_DEPLOYMENT, **deployment_options(settings, GATEWAY_DEPLOYMENT))
    return gateway.bind(config, user, event, payment, notification, media, analytics)
