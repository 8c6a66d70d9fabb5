"""The gateway's request body limit: a clear 413 problem, and no handler sees the body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from serve.gateway.app import create_app
from serve.gateway.services import Services
from tests.conftest import make_settings
from tests.unit.test_gateway_app import FakeClient

NAMES = ("user", "event", "payment", "notification", "media", "analytics")


def gateway() -> tuple[httpx.AsyncClient, dict[str, FakeClient]]:
    fakes = {n: FakeClient(n) for n in NAMES}
    app = create_app(make_settings(jwt_secret="b" * 40, max_request_body_bytes=4096),
                     Services(**fakes))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw"), fakes


async def test_a_declared_length_past_the_limit_is_refused_unread() -> None:
    http, fakes = gateway()
    async with http:
        answer = await http.post("/api/v1/auth/register", content=b"{" + b" " * 5000 + b"}",
                                 headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"].endswith("/payload-too-large") and answer.json()["limit"] == 4096
    assert "x-correlation-id" in answer.headers
    assert fakes["user"].calls == []


async def test_a_chunked_body_is_counted_as_it_arrives() -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1024
            yield b" " * 1024

    http, fakes = gateway()
    async with http:
        answer = await http.post("/api/v1/auth/register", content=chunks(),
                                 headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["status"] == 413
    assert fakes["user"].calls == []


async def test_a_body_within_the_limit_reaches_validation() -> None:
    http, _ = gateway()
    async with http:
        answer = await http.post("/api/v1/auth/register", json={"email": "not-an-email"})
    assert answer.status_code == 422


async def test_a_nul_in_the_query_or_path_is_a_422_before_any_service_is_called() -> None:
    http, fakes = gateway()
    async with http:
        for url in ("/api/v1/events?status=draft&organization_id=%0E%C3%A8%00%C2%A9",
                    "/api/v1/events/a%00b", "/api/v1/events?q=%00"):
            answer = await http.get(url, headers={"Authorization": "Bearer x"})
            assert answer.status_code == 422, url
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["type"].endswith("/invalid-value")
        listed = await http.get("/api/v1/events?q=caf%C3%A9")  # other text goes through
    assert listed.status_code != 422
    assert all(not f.calls for n, f in fakes.items() if n != "event")
    assert len(fakes["event"].calls) == 1
