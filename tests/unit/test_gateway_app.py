"""The gateway's FastAPI app with fake service clients: no Ray, no database."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve.gateway.app import Unlabelled, create_app
from serve.gateway.services import Services
from tests.conftest import make_settings


class FakeClient:
    def __init__(self, name: str, status: str = "UP") -> None:
        self.name = name
        self.status = status
        self.calls: list[tuple[str, Any]] = []

    async def call(self, method: str, *args: Any) -> Any:
        self.calls.append((method, args))
        if self.status == "BROKEN":
            raise ConnectionError("replica gone")
        return {"status": self.status, "components": {}}


METRICS_TOKEN = "metrics-" + "m" * 32


def make_app(**statuses: str) -> tuple[FastAPI, dict[str, FakeClient]]:
    names = ("user", "event", "payment", "notification", "media", "analytics")
    fakes = {n: FakeClient(n, statuses.get(n, "UP")) for n in names}
    app = create_app(make_settings(metrics_token=METRICS_TOKEN),
                     Services(**fakes))  # type: ignore[arg-type]
    return app, fakes


def make_client(**statuses: str) -> tuple[TestClient, dict[str, FakeClient]]:
    app, fakes = make_app(**statuses)
    return TestClient(app), fakes


def test_health_is_up_when_every_service_is_up() -> None:
    client, fakes = make_client()
    response = client.get("/actuator/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "UP"
    assert set(body["services"]) == {"gateway", *fakes}
    assert body["dependencies"]["broker"] == {"status": "UP", "transport": "embedded"}


@pytest.mark.parametrize("status", ["DOWN", "BROKEN"])
def test_health_is_503_when_a_service_is_down(status: str) -> None:
    client, _ = make_client(payment=status)
    response = client.get("/actuator/health")
    assert response.status_code == 503
    assert response.json()["services"]["payment"]["status"] == "DOWN"


def test_health_names_a_failure_without_its_text() -> None:
    client, _ = make_client(payment="BROKEN")
    response = client.get("/actuator/health")
    assert response.json()["services"]["payment"] == {"status": "DOWN",
                                                      "error": "ConnectionError"}
    assert "replica gone" not in response.text


def test_service_calls_carry_the_request_correlation_id() -> None:
    client, fakes = make_client()
    response = client.get("/actuator/health", headers={"X-Correlation-ID": "abc-1"})
    assert response.headers["X-Correlation-ID"] == "abc-1"
    (method, (ctx,)) = fakes["event"].calls[-1]
    assert method == "health"
    assert ctx.correlation_id == "abc-1"


def test_unknown_route_is_a_404_problem() -> None:
    client, _ = make_client()
    response = client.delete("/api/v1/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/not-found")
    assert len(response.headers["X-Correlation-ID"]) == 32


def test_prometheus_counts_requests_by_route_template_and_status() -> None:
    client, _ = make_client()
    client.get("/actuator/health")
    client.get("/api/v1/nowhere")
    text = client.get("/actuator/prometheus",
                      headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert 'afisha_http_requests_total{method="GET",route="/actuator/health",status="200"} 1.0' \
        in text
    assert 'route="<unmatched>",status="404"' in text
    assert "afisha_http_request_duration_seconds_bucket" in text


async def test_prometheus_needs_an_allowed_network_or_the_token() -> None:
    import httpx

    names = ("user", "event", "payment", "notification", "media", "analytics")
    app = create_app(make_settings(metrics_token=METRICS_TOKEN, metrics_networks="10.1.0.0/16"),
                     Services(**{n: FakeClient(n) for n in names}))  # type: ignore[arg-type]

    async def get(client: str, **headers: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            return await http.get("/actuator/prometheus", headers=headers)

    refused = await get("203.0.113.5")
    assert refused.status_code == 403 and refused.json()["type"].endswith("/metrics-forbidden")
    assert (await get("203.0.113.5", Authorization="Bearer nope")).status_code == 403
    assert (await get("203.0.113.5", Authorization=f"Bearer {METRICS_TOKEN}")).status_code == 200
    assert (await get("10.1.2.3")).status_code == 200
    assert (await get("127.0.0.1")).status_code == 403  # loopback is allowed only by default
    default = create_app(make_settings(), Services(**{n: FakeClient(n) for n in names}))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=default, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        assert (await http.get("/actuator/prometheus")).status_code == 200


def test_unexpected_errors_are_a_500_problem_with_the_correlation_id() -> None:
    client, _ = make_client()
    app = client.app

    @app.get("/boom")  # type: ignore[attr-defined,untyped-decorator]
    async def boom() -> None:
        raise RuntimeError("bug")

    response = TestClient(app, raise_server_exceptions=False).get(
        "/boom", headers={"X-Correlation-ID": "cid-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["X-Correlation-ID"] == "cid-500"
    assert response.json()["correlation_id"] == "cid-500"


def test_the_api_docs_need_no_internet() -> None:
    import re

    client, _ = make_client()
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert not re.search(r"(src|href)=['\"]https?://", html), page
        for asset in re.findall(r"(?:src|href)=['\"](/[^'\"]+)['\"]", html):
            served = client.get(asset)
            assert served.status_code == 200 and len(served.content) > 1000, asset
    assert client.get("/openapi.json").json()["info"]["title"] == "Afisha API"


def test_every_operation_documents_its_errors_as_problems() -> None:
    client, _ = make_client()
    document = client.get("/openapi.json").json()
    assert document["components"]["schemas"]["Problem"]["required"] == [
        "type", "title", "status", "detail"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code in ("401", "404", "422", "503"):
                content = operation["responses"][code]["content"]
                assert list(content) == ["application/problem+json"], (method, path, code)


def test_the_replica_app_answers_as_the_api_and_shows_serve_no_routes() -> None:
    app = Unlabelled(make_app()[0])
    assert not hasattr(app, "routes")  # Serve labels by route only for an app with routes
    with TestClient(app) as client:  # lifespan and requests pass through
        assert client.get("/actuator/health").json()["status"] == "UP"
        assert client.get("/api/v1/nowhere").status_code == 404
        text = client.get("/actuator/prometheus",
                          headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert 'route="/actuator/health",status="200"' in text


def test_the_pay_link_needs_no_token_and_redirects_to_the_providers_page() -> None:
    app, fakes = make_app()
    page = "https://yoomoney.example/checkout?orderId=2d1"

    async def opened(method: str, *args: Any) -> Any:
        fakes["payment"].calls.append((method, args))
        return {"location": page}

    fakes["payment"].call = opened  # type: ignore[method-assign]
    client = TestClient(app)
    payment_id = "3f1c2b9e-1111-4222-8333-444455556666"
    answer = client.get(f"/api/v1/payments/{payment_id}/pay", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == page
    [(method, (ctx, asked))] = fakes["payment"].calls
    assert (method, asked, ctx.identity) == ("open_payment", payment_id, None)
    # A HEAD (a link checker) does not open it: opening issues the payment at the provider.
    assert client.head(f"/api/v1/payments/{payment_id}/pay").status_code == 405
    assert len(fakes["payment"].calls) == 1
