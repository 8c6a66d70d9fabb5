"""The Serve application graph: gateway ingress plus one deployment per service.

Handles are wired as SPEC's synchronous-call table says: Event -> User, Media;
Payment -> Event; Notification -> User, Event; Analytics -> Event, User; the gateway reaches all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment

from cluster.settings import APP_NAME, GATEWAY_DEPLOYMENT, SERVICES, Settings, deployment_of

if TYPE_CHECKING:
    from serve.common.service import ServiceBase

__all__ = ["APP_NAME", "DEPLOYMENTS", "SERVE_ENV", "build_app"]
DEPLOYMENTS = (GATEWAY_DEPLOYMENT, *(deployment_of(s) for s in SERVICES))

# Environment read when Serve's processes start: throughput mode, and a controller loop that
# runs once a second instead of ten times (it costs CPU at rest; replica failures are still
# noticed within a second).
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
             "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "1"}


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
        return cast(Deployment, serve.deployment(cls)).options(
            name=deployment_of(cls.service), num_replicas=1,
            max_ongoing_requests=settings.service_max_ongoing_requests,
            ray_actor_options={"num_cpus": settings.service_num_cpus})

    user = service(UserService).bind(config)
    media = service(MediaService).bind(config, user)
    event = service(EventService).bind(config, user, media)
    payment = service(PaymentService).bind(config, event)
    notification = service(NotificationService).bind(config, user, event)
    analytics = service(AnalyticsService).bind(config, event, user)
    gateway = cast(Deployment, serve.deployment(Gateway)).options(
        name=GATEWAY_DEPLOYMENT, num_replicas=settings.gateway_replicas,
        max_ongoing_requests=settings.gateway_max_ongoing_requests,
        ray_actor_options={"num_cpus": settings.gateway_num_cpus})
    return gateway.bind(config, user, event, payment, notification, media, analytics)
