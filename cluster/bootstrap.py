"""Start and stop the platform: database, migrations, Ray, the Serve application."""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from cluster.app import NODE_ENV, SERVE_ENV, build_app
from cluster.embedded import EmbeddedPostgres
from cluster.settings import APP_NAME, Settings
from storage import migrate

Progress = Callable[[str], None]


class StartupError(RuntimeError):
    """The platform could not start; the message says what to fix."""


@dataclass
class Platform:
    settings: Settings
    embedded_pg: EmbeddedPostgres | None = None
    started_ray: bool = False
    connected_ray: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    @property
    def runs_dashboard(self) -> bool:
        """This run started the Ray head, with its dashboard (AFISHA_RAY_DASHBOARD)."""
        return self.started_ray and self.settings.ray_dashboard

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.settings.dashboard_host}:{self.settings.dashboard_port}"


def resolve_database(settings: Settings, platform: Platform, progress: Progress) -> Settings:
    if settings.has_database():
        return settings
    progress(f"starting embedded PostgreSQL in {settings.data_dir / 'postgres'}")
    platform.embedded_pg = EmbeddedPostgres(settings.data_dir)
    url = platform.embedded_pg.start()
    return settings.model_copy(update={"database_url": url})


def resolve_secrets(settings: Settings) -> Settings:
    """For ``afisha run``: generate unset secrets once (JWT HS256 key, ticket signing key,
    sandbox webhook secret) in the data directory. ``afisha deploy`` never does."""
    updates = {}
    if settings.jwt_algorithm == "HS256" and not settings.jwt_secret:
        updates["jwt_secret"] = SecretStr(_kept_secret(settings.data_dir / "jwt_secret"))
    if not settings.ticket_signing_key:
        updates["ticket_signing_key"] = SecretStr(_kept_secret(settings.data_dir / "ticket_key"))
    if not settings.sandbox_webhook_secret:
        updates["sandbox_webhook_secret"] = SecretStr(
            _kept_secret(settings.data_dir / "sandbox_secret"))
    return settings.model_copy(update=updates) if updates else settings


def resolve_provider(settings: Settings, platform: Platform) -> Settings:
    """The sandbox only when chosen, or for ``afisha run`` on an embedded database."""
    if settings.payment_provider is not None:
        return settings
    if platform.embedded_pg is None:
        raise StartupError(
            "AFISHA_PAYMENT_PROVIDER is not set: choose yookassa, or sandbox for a test "
            "installation (its checkout lets payers mark their own payments paid)")
    platform.notes.append("Payments     sandbox provider (embedded defaults: payers can mark "
                          "their own payments paid)")
    return settings.model_copy(update={"payment_provider": "sandbox"})


def deploy_problems(settings: Settings) -> list[str]:
    """What ``afisha deploy`` refuses to start without: every secret and the payment provider
    chosen explicitly (nothing is generated for a cluster)."""
    problems = []
    if not settings.has_database():
        problems.append("AFISHA_DATABASE_URL (deploying onto a cluster needs a database)")
    if settings.payment_provider is None:
        problems.append("AFISHA_PAYMENT_PROVIDER (yookassa, or sandbox for a test installation)")
    if settings.jwt_algorithm == "HS256" and not settings.jwt_secret:
        problems.append("AFISHA_JWT_SECRET")
    if settings.jwt_algorithm != "HS256" and not (settings.jwt_private_key
                                                   and settings.jwt_public_key):
        problems.append("AFISHA_JWT_PRIVATE_KEY and AFISHA_JWT_PUBLIC_KEY")
    if not settings.ticket_signing_key:
        problems.append("AFISHA_TICKET_SIGNING_KEY")
    if settings.payment_provider == "sandbox" and not settings.sandbox_webhook_secret:
        problems.append("AFISHA_SANDBOX_WEBHOOK_SECRET")
    if settings.payment_provider == "yookassa" and not (settings.yookassa_shop_id
                                                        and settings.yookassa_secret_key):
        problems.append("AFISHA_YOOKASSA_SHOP_ID and AFISHA_YOOKASSA_SECRET_KEY")
    return problems


def _kept_secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def apply_migrations(settings: Settings, progress: Progress) -> None:
    migrate.upgrade(settings, progress=lambda s: progress(f"migrating {s}_service"))


def connect_ray(settings: Settings, platform: Platform, address: str | None) -> None:
    import ray

    os.environ.update({**SERVE_ENV, **NODE_ENV})  # a local head's raylet reads NODE_ENV
    kwargs: dict[str, Any] = {"namespace": "afisha", "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kwargs)
        platform.connected_ray = True
        return
    ray.init(
        address="local",
        num_cpus=settings.ray_num_cpus,
        include_dashboard=settings.ray_dashboard,
        dashboard_host=settings.dashboard_host,
        dashboard_port=settings.dashboard_port,
        **kwargs,
    )
    platform.started_ray = True
    platform.connected_ray = True


def deploy(settings: Settings) -> None:
    from ray import serve

    serve.start(proxy_location=settings.proxy_location,
                http_options={"host": settings.http_host, "port": settings.http_port})
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=False)


def wait_healthy(url: str, timeout: float, progress: Progress) -> dict[str, Any]:
    """Poll ``/actuator/health`` until every service is UP."""
    deadline = time.monotonic() + timeout
    last: Any = "no answer yet"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/actuator/health", timeout=10)
            body = response.json()
            if response.status_code == 200:
                return dict(body)
            down = [n for n, s in body.get("services", {}).items() if s.get("status") != "UP"]
            last = f"waiting for {', '.join(down) or 'dependencies'}"
        except (httpx.HTTPError, ValueError) as exc:
            last = f"{type(exc).__name__}"
        progress(f"waiting for health ({last})")
        time.sleep(1)
    raise StartupError(f"the platform did not become healthy within {timeout:.0f}s: {last}")


def start(settings: Settings, progress: Progress, address: str | None = None,
          health_timeout: float = 180) -> Platform:
    """Everything ``afisha run`` does before it waits for Ctrl-C."""
    platform = Platform(settings)
    try:
        settings = resolve_secrets(resolve_database(settings, platform, progress))
        settings = resolve_provider(settings, platform)
        platform.settings = settings
        apply_migrations(settings, progress)
        progress("starting Ray" if not address else f"joining Ray at {address}")
        connect_ray(settings, platform, address)
        progress("deploying the Serve application")
        deploy(settings)
        wait_healthy(platform.api_url, health_timeout, progress)
    except BaseException:
        stop(platform)
        raise
    token = Path.home() / ".ray" / "auth_token"
    if platform.runs_dashboard and token.exists():
        platform.notes.append(f"Ray dashboard token: {token}")
    return platform


def stop(platform: Platform) -> None:
    """Stop what ``start`` started, in reverse order."""
    if platform.connected_ray:
        import ray
        from ray import serve

        if not platform.started_ray:
            serve.delete(APP_NAME)
        ray.shutdown()
        platform.connected_ray = platform.started_ray = False
    if platform.embedded_pg is not None:
        platform.embedded_pg.stop()
        platform.embedded_pg = None
