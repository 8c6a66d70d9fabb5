"""Secrets are ``SecretStr`` settings: their values (and the passwords inside URLs) never show in
the settings' repr or str, the health answer, an error body, a log line or the Serve config;
they are unwrapped only where they are used and on the way to the replicas."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cluster import serve_config
from cluster.settings import Settings, reveal, secret_fields, without_password
from serve.gateway.app import create_app
from serve.gateway.services import Services
from serve.users import tokens
from tests.conftest import make_settings
from tests.unit.test_gateway_app import FakeClient

# A distinctive value for every secret, and URLs whose passwords are distinctive too.
SECRETS = {name: f"sekrit-{name}-{'x' * 24}" for name in secret_fields()}
PASSWORD = "pw-never-shown-7f3a"
URLS = {
    "database_url": f"postgresql://afisha:{PASSWORD}@127.0.0.1:1/afisha",
    "amqp_url": f"amqp://afisha:{PASSWORD}@127.0.0.1:1/",
    "redis_url": f"redis://:{PASSWORD}@127.0.0.1:1/0",
}


def settings(**extra: Any) -> Settings:
    return make_settings(**{**SECRETS, **URLS, **extra})


def leaked(text: str) -> list[str]:
    return [v for v in (*SECRETS.values(), PASSWORD) if v in text]


def test_every_secret_setting_is_a_secret_str() -> None:
    assert {"jwt_secret", "jwt_private_key", "ticket_signing_key", "sandbox_webhook_secret",
            "yookassa_secret_key", "s3_secret_key", "telegram_bot_token", "metrics_token",
            "media_signing_key", "telegram_webhook_secret",
            "analytics_signing_secret"} <= set(secret_fields())
    loaded = settings()
    for name in secret_fields():
        assert isinstance(getattr(loaded, name), SecretStr), name
        assert reveal(getattr(loaded, name)) == SECRETS[name]


def test_repr_and_str_show_no_secret_and_no_password() -> None:
    loaded = settings()
    for text in (repr(loaded), str(loaded), f"{loaded}"):
        assert leaked(text) == [], text
    assert "postgresql+asyncpg://afisha:***@127.0.0.1:1/afisha" in repr(loaded)


def test_the_replicas_get_the_secrets_and_the_same_settings_back() -> None:
    loaded = settings()
    runtime = loaded.to_runtime()
    assert runtime["jwt_secret"] == SECRETS["jwt_secret"]
    assert Settings.from_runtime(runtime) == loaded


def test_the_serve_config_carries_no_secret() -> None:
    assert leaked(serve_config.render(settings())) == []
    plain = make_settings(database_url="postgresql://afisha@db/afisha")
    assert "AFISHA_DATABASE_URL" in serve_config.runtime_env_vars(plain)  # no password: kept


def test_passwords_are_masked_in_the_authority_and_the_query() -> None:
    assert without_password("amqp://u:p@h:5672/v") == "amqp://u:***@h:5672/v"
    assert without_password("postgresql://h/d?user=u&password=p") == (
        "postgresql://h/d?user=u&password=***")
    assert without_password("redis://h:6379/0") == "redis://h:6379/0"


def test_health_errors_and_logs_of_the_gateway_show_no_secret(
        caplog: pytest.LogCaptureFixture) -> None:
    names = ("user", "event", "payment", "notification", "media", "analytics")
    fakes = {n: FakeClient(n, "BROKEN" if n == "payment" else "UP") for n in names}
    loaded = settings(redis_url=None, jwt_algorithm="HS256")
    caplog.set_level(logging.DEBUG)
    client = TestClient(create_app(loaded, Services(**fakes)),  # type: ignore[arg-type]
                        raise_server_exceptions=False)
    logging.getLogger("afisha").info("starting with %s", loaded)  # a startup line
    health = client.get("/actuator/health")
    assert health.status_code == 503  # the broker at port 1 and the payment service are down
    assert health.json()["dependencies"]["broker"]["status"] == "DOWN"
    bodies = [health.text]
    for path, headers in (("/actuator/prometheus", {"Authorization": "Bearer wrong"}),
                          ("/api/v1/users/me", {"Authorization": "Bearer not-a-jwt"}),
                          ("/api/v1/users/me", {"Authorization": "Bearer " + tokens.issue(
                              make_settings(jwt_secret="other" * 10), "u", "access", 60)})):
        answer = client.get(path, headers=headers)
        assert answer.status_code in (401, 403), answer.text
        bodies.append(answer.text)
    assert leaked("\n".join(bodies)) == []
    assert leaked(caplog.text) == []
    assert "starting with" in caplog.text
