"""The event routes of the gateway with fake clients: which call each request becomes."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from serve.common.bounded import BoundedDict
from serve.gateway.app import create_app
from serve.gateway.services import Services
from serve.users.tokens import issue_access_token
from tests.conftest import make_settings

SETTINGS = make_settings(jwt_secret="unit-" + "x" * 40)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def call(self, *args: Any) -> Any:
        self.calls.append(args)
        return {"id": "r1", "status": "pending_payment"}

    async def reserve(self, *args: Any) -> Any:
        return await self.call(args[0], "reserve", *args[1:])


def app() -> tuple[TestClient, Recorder, Recorder]:
    event, inventory = Recorder(), Recorder()
    fakes = {n: Recorder() for n in ("user", "payment", "notification", "media", "analytics")}
    application = create_app(SETTINGS, Services(event=event, **fakes))  # type: ignore[arg-type]
    application.state.inventory = inventory
    application.state.known_events = BoundedDict(100)
    return TestClient(application), event, inventory


def auth(user_id: str = "u1") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(SETTINGS, user_id)}"}


def test_the_first_registration_goes_through_the_service_then_straight_to_the_actor() -> None:
    client, event, inventory = app()
    body = {"ticket_type_id": "tt", "quantity": 2}
    first = client.post("/api/v1/events/e1/registrations", json=body, headers=auth())
    second = client.post("/api/v1/events/e1/registrations", json=body,
                         headers=auth() | {"Idempotency-Key": "k-7"})
    assert first.status_code == second.status_code == 201
    assert [c[0] for c in event.calls] == ["register"]
    [(event_id, method, user, tt, quantity, mode, key, _cid)] = inventory.calls
    assert (event_id, method, user, tt, quantity, mode, key) == (
        "e1", "reserve", "u1", "tt", 2, "full", "k-7")


def test_lifecycle_routes_name_their_action() -> None:
    client, event, _ = app()
    for action in ("publish", "unpublish", "cancel", "complete"):
        assert client.post(f"/api/v1/events/e1/{action}", headers=auth()).status_code == 200
    assert [c[0] for c in event.calls] == ["transition_event"] * 4
    assert [c[3] for c in event.calls] == ["publish", "unpublish", "cancel", "complete"]


def test_bad_input_and_missing_token_are_problems() -> None:
    client, event, inventory = app()
    url = "/api/v1/events/e1/registrations"
    assert client.post(url, json={"ticket_type_id": "tt"}).status_code == 401
    for body in ({"ticket_type_id": "tt", "quantity": 0}, {"ticket_type_id": "tt",
                 "quantity": 1.5}, {"quantity": 1}, {"ticket_type_id": "tt", "extra": 1}):
        response = client.post(url, json=body, headers=auth())
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    money = {"name": "GA", "price": {"amount": 10.5, "currency": "RUB"}, "quantity": 1}
    assert client.post("/api/v1/events/e1/ticket-types", json=money,
                       headers=auth()).status_code == 422
    assert event.calls == [] and inventory.calls == []
