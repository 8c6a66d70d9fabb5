"""The Serve application graph: gateway ingress plus one deployment per service.

Handles are wired as SPEC's synchronous-call table says: Event -> User, Media;
Payment -> Event; Notification -> User, Event; Analytics -> Event; the gateway reaches all.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from cluster.settings import Settings

APP_NAME = "afisha"
DEPLOYMENTS = ("Gateway", "UserService", "EventService", "PaymentService",
               "NotificationService", "MediaService", "AnalyticsService")

# Environment that puts Serve in throughput mode; read when Serve's processes start.
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}


def build_app(settings: Settings) -> Application:
    from serve.analytics.deployment import AnalyticsService
    from serve.events.deployment import EventService
    from serve.gateway.deployment import Gateway
    from serve.media.deployment import MediaService
    from serve.notifications.deployment import NotificationService
    from serve.payments.deployment import PaymentService
    from serve.users.deployment import UserService

    config = settings.to_runtime()
    service_opts: dict[str, Any] = {"ray_actor_options": {"num_cpus": settings.service_num_cpus},
                                    "num_replicas": 1}
    user = UserService.options(**service_opts).bind(config)
    media = MediaService.options(**service_opts).bind(config)
    event = EventService.options(**service_opts).bind(config, user, media)
    payment = PaymentService.options(**service_opts).bind(config, event)
    notification = NotificationService.options(**service_opts).bind(config, user, event)
    analytics = AnalyticsService.options(**service_opts).bind(config, event)
    return Gateway.options(
        num_replicas=settings.gateway_replicas,
        ray_actor_options={"num_cpus": settings.gateway_num_cpus},
    ).bind(config, user, event, payment, notification, media, analytics)
