"""The running platform over HTTP: health, correlation ids, errors, docs, metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.e2e.conftest import E2E_JWT_SECRET, RunningPlatform
from tests.fakes.telegram_api import FakeTelegram

DEPLOYMENTS = {"gateway", "user", "event", "payment", "notification", "media", "analytics"}


def test_health_is_up_for_all_seven_deployments_and_dependencies(
        platform: RunningPlatform) -> None:
    with platform.client() as http:
        response = http.get("/actuator/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "UP"
    assert set(body["services"]) == DEPLOYMENTS
    assert all(s["status"] == "UP" for s in body["services"].values())
    for name in DEPLOYMENTS - {"gateway"}:
        database = body["services"][name]["components"]["database"]
        assert database == {**database, "status": "UP", "schema": f"{name}_service"}
    assert body["dependencies"]["broker"]["status"] == "UP"
    assert body["dependencies"]["redis"]["status"] == "UP"


def test_the_ray_dashboard_is_off_unless_asked_for(platform: RunningPlatform) -> None:
    """``afisha run`` starts its Ray head without the dashboard (AFISHA_RAY_DASHBOARD)."""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", platform.dashboard_port), timeout=5).close()
    assert "Ray dashboard" not in platform.log.read_text()


def test_correlation_id_round_trip(platform: RunningPlatform) -> None:
    with platform.client() as http:
        given = http.get("/actuator/health", headers={"X-Correlation-ID": "e2e-corr-1"})
        generated = http.get("/actuator/health")
    assert given.headers["X-Correlation-ID"] == "e2e-corr-1"
    assert len(generated.headers["X-Correlation-ID"]) == 32


def test_unknown_route_is_a_404_problem(platform: RunningPlatform) -> None:
    with platform.client() as http:
        response = http.get("/api/v1/no-such-thing/42", headers={"X-Correlation-ID": "nf-1"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404
    assert body["type"] == "https://afisha.dev/problems/not-found"
    assert body["instance"] == "/api/v1/no-such-thing/42"
    assert response.headers["X-Correlation-ID"] == "nf-1"


def test_openapi_and_swagger_ui_are_served(platform: RunningPlatform) -> None:
    with platform.client() as http:
        spec = http.get("/openapi.json").json()
        docs = http.get("/docs")
    assert spec["info"]["title"] == "Afisha API"
    assert "/actuator/health" in spec["paths"]
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text


def test_prometheus_reports_requests_by_route_and_status(platform: RunningPlatform) -> None:
    with platform.client() as http:
        http.get("/actuator/health")
        text = http.get("/actuator/prometheus").text
    assert 'afisha_http_requests_total{method="GET",route="/actuator/health",status="200"}' in text
    assert "afisha_http_request_duration_seconds_bucket" in text


def test_afisha_status_prints_the_health_table(platform: RunningPlatform) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cluster.cli", "status", "--url", platform.base_url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    for name in DEPLOYMENTS:
        assert name in result.stdout
    assert "DOWN" not in result.stdout


def test_no_secret_reaches_the_log_health_or_an_error(platform: RunningPlatform,
                                                      amqp_url: str,
                                                      bot_api: FakeTelegram) -> None:
    """The platform was started with the JWT secret, the bot token and the broker's password
    in its environment; none of them shows in what it answers or in its captured log."""
    from urllib.parse import urlsplit

    secrets = [E2E_JWT_SECRET, bot_api.token]
    password = urlsplit(amqp_url).password
    with platform.client() as http:
        bodies = [http.get("/actuator/health").text,
                  http.get("/api/v1/users/me", headers={"Authorization": "Bearer x"}).text,
                  http.get("/api/v1/no-such-thing").text]
    log = platform.log.read_text(errors="replace")  # empty for a deployed platform
    if platform.pid:
        assert "afisha" in log.lower()  # the startup lines are there
    for text in (*bodies, log):
        assert not [s for s in secrets if s and s in text]
        if password:
            assert f":{password}@" not in text
