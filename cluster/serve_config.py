"""The Serve config file (``afisha config``): what ``serve deploy`` and KubeRay's
``serveConfigV2`` take.

One source for the deployments' options: ``cluster.app.build_app`` (``afisha run`` and
``afisha deploy``) applies :func:`deployment_options` too, so the file and a deploy agree.
The settings travel as ``runtime_env.env_vars`` except the secrets (:data:`SECRET_FIELDS`, and
database/broker/Redis URLs that carry a password): those come from the nodes' environment or
from files in ``AFISHA_SECRETS_DIR`` (one file a setting, named like its variable).
"""

from __future__ import annotations

from typing import Any

from cluster.settings import (
    APP_NAME,
    GATEWAY_DEPLOYMENT,
    SERVICES,
    URL_FIELDS,
    Settings,
    deployment_of,
    has_password,
    secret_fields,
)

IMPORT_PATH = "cluster.app:from_environment"
DEPLOYMENTS = (GATEWAY_DEPLOYMENT, *(deployment_of(s) for s in SERVICES))
# Services whose replicas autoscale with the gateway: the hot path (event) and the heaviest
# consumers (payment, analytics).
BUSY_SERVICES = ("event", "payment", "analytics")
# Services that only consume or serve downstream work: what may leave the hot-path nodes.
CONSUMER_SERVICES = ("payment", "notification", "media", "analytics")
SECRET_FIELDS = frozenset(secret_fields())
# Environment of Serve's processes: throughput mode, a once-a-second controller loop, and
# Serve's own request metrics handed to Ray's metrics once a second (default every 100 ms, by
# one timer per replica and one per handle: ~70 wake-ups a second in an idle gateway).
SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
             "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "1",
             "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000"}


# Environment of the Ray nodes themselves, read by the raylet when it starts workers. Ray
# starts every worker at niceness 15 unless told otherwise; at 0 the hot path (gateway, event
# service, inventory hosts) runs at normal priority, and AFISHA_BACKGROUND_NICENESS puts the
# downstream services below it (at 15 it would put them above it).
NODE_ENV = {"RAY_worker_niceness": "0"}


def is_secret(field: str, value: Any) -> bool:
    if field in SECRET_FIELDS:
        return True
    return field in URL_FIELDS and isinstance(value, str) and has_password(value)


def _autoscaling(minimum: int, maximum: int | None, target: float) -> dict[str, Any] | None:
    if maximum is None or maximum <= minimum:
        return None
    return {"min_replicas": minimum, "max_replicas": maximum,
            "target_ongoing_requests": target}


def deployment_options(settings: Settings, name: str) -> dict[str, Any]:
    """Serve options of one deployment (``Deployment.options`` keywords, and the config's)."""
    options: dict[str, Any]
    if name == GATEWAY_DEPLOYMENT:
        scaling = _autoscaling(settings.gateway_replicas, settings.gateway_max_replicas,
                               settings.gateway_target_ongoing_requests)
        options = {"max_ongoing_requests": settings.gateway_max_ongoing_requests,
                   "ray_actor_options": {"num_cpus": settings.gateway_num_cpus}}
        replicas = settings.gateway_replicas
        if settings.gateway_max_replicas_per_node is not None:
            options["max_replicas_per_node"] = settings.gateway_max_replicas_per_node
    else:
        service = next(s for s in SERVICES if deployment_of(s) == name)
        scaling = (_autoscaling(1, settings.service_max_replicas,
                                settings.service_target_ongoing_requests)
                   if service in BUSY_SERVICES else None)
        options = {"max_ongoing_requests": settings.service_max_ongoing_requests,
                   "ray_actor_options": {"num_cpus": settings.service_num_cpus}}
        replicas = 1
        if service in CONSUMER_SERVICES and settings.consumer_resource:
            options["ray_actor_options"]["resources"] = {
                settings.consumer_resource: settings.consumer_resource_amount}
    options["logging_config"] = {"enable_access_log": settings.serve_access_log}
    if scaling is None:
        options["num_replicas"] = replicas
    else:
        options["autoscaling_config"] = scaling
    return options


def runtime_env_vars(settings: Settings) -> dict[str, str]:
    """Every setting that is not a secret, as the ``AFISHA_*`` variable a node would read."""
    env = dict(SERVE_ENV)
    for field, value in settings.model_dump(mode="json").items():
        if value is None or is_secret(field, value):
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        env[f"AFISHA_{field.upper()}"] = text
    return env


def serve_config(settings: Settings) -> dict[str, Any]:
    """The whole Serve config (``ServeDeploySchema``), as plain data."""
    return {
        "proxy_location": settings.proxy_location,
        "http_options": {"host": settings.http_host, "port": settings.http_port},
        "applications": [{
            "name": APP_NAME,
            "route_prefix": "/",
            "import_path": IMPORT_PATH,
            "runtime_env": {"env_vars": runtime_env_vars(settings)},
            "deployments": [{"name": name, **deployment_options(settings, name)}
                            for name in DEPLOYMENTS],
        }],
    }


def render(settings: Settings) -> str:
    import yaml

    header = ("# Serve config of Afisha, written by `afisha config` (serve deploy / KubeRay "
              "serveConfigV2).\n# Secrets are not here: set them in the nodes' environment "
              "or in files under AFISHA_SECRETS_DIR.\n")
    return header + yaml.safe_dump(serve_config(settings), sort_keys=False)
