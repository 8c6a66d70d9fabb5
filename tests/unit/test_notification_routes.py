"""The notification routes of the gateway with a fake client: which call each request becomes,
and that they are in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from serve.gateway.app import create_app
from serve.gateway.services import Services
from serve.users.tokens import issue_access_token
from tests.conftest import make_settings

SETTINGS = make_settings(jwt_secret="unit-" + "x" * 40)


class Recorder:
    def __init__(self, answer: Any) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.answer = answer

    async def call(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.answer


def client(answer: Any) -> tuple[TestClient, Recorder]:
    notification = Recorder(answer)
    fakes = {n: Recorder({}) for n in ("user", "event", "payment", "media", "analytics")}
    app = create_app(SETTINGS, Services(notification=notification, **fakes))  # type: ignore[arg-type]
    return TestClient(app), notification


def auth(user_id: str = "u1") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(SETTINGS, user_id)}"}


def test_send_answers_202_with_its_job() -> None:
    job = {"id": "j1", "event_id": "e1", "recipients": 2, "created_at": "2030-01-01T00:00:00",
           "counts": {"queued": 2}}
    http, notification = client(job)
    sent = http.post("/api/v1/notifications/send", headers=auth(),
                     json={"text": "Doors open at 19:00", "event_id": "e1"})
    assert sent.status_code == 202 and sent.json()["id"] == "j1"
    method, _ctx, body = notification.calls[0]
    assert method == "send" and body["event_id"] == "e1"
    assert http.post("/api/v1/notifications/send", json={"text": "x"}).status_code == 401


def test_the_webhook_is_public_and_passes_the_secret_header() -> None:
    http, notification = client({"ok": True})
    answered = http.post("/api/v1/telegram/webhook", json={"update_id": 7},
                         headers={"X-Telegram-Bot-Api-Secret-Token": "s"})
    assert answered.status_code == 200
    method, _ctx, secret, update = notification.calls[0]
    assert (method, secret, update) == ("telegram_update", "s", {"update_id": 7})


def test_the_notification_routes_are_documented() -> None:
    http, _ = client({})
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/notifications/templates", "/api/v1/notifications/templates/{key}",
                 "/api/v1/notifications/preferences", "/api/v1/notifications/send",
                 "/api/v1/notifications/jobs/{job_id}", "/api/v1/notifications/log",
                 "/api/v1/telegram/webhook", "/api/v1/users/me/telegram-link"):
        assert path in paths, path
