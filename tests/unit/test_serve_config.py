"""``afisha config``: the Serve config file Serve's own schema accepts, round-trips, and holds
no secret; placement and autoscaling options come from settings that default off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema
from typer.testing import CliRunner

from cluster import serve_config
from cluster.app import DEPLOYMENTS
from cluster.cli import app
from cluster.settings import GATEWAY_DEPLOYMENT, Settings, reveal
from tests.conftest import make_settings

SECRETS = {
    "jwt_secret": "jwt-secret-value-0123456789abcdef0123456789",
    "jwt_private_key": "-----BEGIN PRIVATE KEY-----private-----END PRIVATE KEY-----",
    "ticket_signing_key": "ticket-signing-key-value-0123456789abcdef",
    "sandbox_webhook_secret": "sandbox-webhook-secret-value-0123456789",
    "yookassa_secret_key": "live_yookassa_secret_value",
    "s3_access_key": "s3-access-key-value", "s3_secret_key": "s3-secret-key-value",
    "telegram_bot_token": "123456:telegram-token-value",
    "metrics_token": "metrics-token-value",
    "database_url": "postgresql://afisha:db-password-value@db.internal/afisha",
    "amqp_url": "amqp://afisha:amqp-password-value@mq.internal:5672/",
    "redis_url": "redis://:redis-password-value@cache.internal:6379/0",
}
CLUSTER = {"gateway_replicas": 2, "gateway_max_replicas": 4, "service_max_replicas": 3,
           "gateway_max_replicas_per_node": 1, "inventory_spread": True,
           "consumer_resource": "afisha_worker", "http_host": "0.0.0.0",
           "payment_provider": "yookassa", "yookassa_shop_id": "12345", "inventory_hosts": 4}


def _parsed(text: str) -> ServeDeploySchema:
    return ServeDeploySchema.model_validate(yaml.safe_load(text))


def test_config_validates_and_round_trips() -> None:
    text = serve_config.render(make_settings(**CLUSTER, **SECRETS))
    schema = _parsed(text)
    dumped = yaml.safe_dump(schema.model_dump(mode="json", exclude_unset=True))
    assert _parsed(dumped) == schema
    [application] = schema.applications
    assert application.import_path == "cluster.app:from_environment"
    assert [d.name for d in application.deployments] == list(DEPLOYMENTS)


def test_no_secret_value_in_the_config() -> None:
    text = serve_config.render(make_settings(**CLUSTER, **SECRETS))
    for field, value in SECRETS.items():
        assert value not in text, field
        assert f"AFISHA_{field.upper()}:" not in text, field
    assert "password-value" not in text
    env = yaml.safe_load(text)["applications"][0]["runtime_env"]["env_vars"]
    assert env["AFISHA_YOOKASSA_SHOP_ID"] == "12345"
    assert env["AFISHA_INVENTORY_HOSTS"] == "4"  # fixed: shards must not move between nodes
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    # A URL without a password is not a secret: it travels with the config.
    plain = serve_config.render(make_settings(database_url="postgresql://afisha@db/afisha"))
    assert "AFISHA_DATABASE_URL: postgresql+asyncpg://afisha@db/afisha" in plain


def test_runtime_env_reads_back_as_the_same_settings(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    settings = make_settings(**CLUSTER, admin_emails=["a@x.ru", "b@x.ru"])
    env = serve_config.runtime_env_vars(settings)
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("AFISHA_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_secrets_come_from_a_mounted_directory(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "AFISHA_JWT_SECRET").write_text("from-a-file")
    monkeypatch.delenv("AFISHA_JWT_SECRET", raising=False)
    assert reveal(Settings(_secrets_dir=tmp_path).jwt_secret) == "from-a-file"


def test_autoscaling_and_placement_options() -> None:
    config = serve_config.serve_config(make_settings(**CLUSTER))
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    gateway = deployments[GATEWAY_DEPLOYMENT]
    assert gateway["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 4,
                                             "target_ongoing_requests": 128}
    assert gateway["max_replicas_per_node"] == 1
    assert "num_replicas" not in gateway
    for name in ("EventService", "PaymentService", "AnalyticsService"):
        assert deployments[name]["autoscaling_config"]["max_replicas"] == 3
    for name in ("PaymentService", "NotificationService", "MediaService", "AnalyticsService"):
        assert deployments[name]["ray_actor_options"]["resources"] == {"afisha_worker": 0.001}
    for name in ("UserService", "EventService", GATEWAY_DEPLOYMENT):
        assert "resources" not in deployments[name]["ray_actor_options"]


def test_defaults_need_nothing_of_a_cluster() -> None:
    """Single node (``make run``): fixed replicas, no custom resource, no per-node limit."""
    config = serve_config.serve_config(make_settings())
    for deployment in config["applications"][0]["deployments"]:
        assert deployment["num_replicas"] == 1
        assert set(deployment) == {"name", "num_replicas", "max_ongoing_requests",
                                   "ray_actor_options", "logging_config"}
        assert deployment["logging_config"] == {"enable_access_log": False}
        assert set(deployment["ray_actor_options"]) == {"num_cpus"}
    assert ServeDeploySchema.model_validate(config)


def test_afisha_config_writes_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFISHA_JWT_SECRET", SECRETS["jwt_secret"])
    monkeypatch.setenv("AFISHA_GATEWAY_MAX_REPLICAS", "3")
    result = CliRunner().invoke(app, ["config", "--output", "serve.yaml"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "serve.yaml").read_text()
    assert SECRETS["jwt_secret"] not in text
    gateway = _parsed(text).applications[0].deployments[0]
    assert gateway.autoscaling_config is not None
    assert gateway.autoscaling_config["max_replicas"] == 3
