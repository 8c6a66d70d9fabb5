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


def app(event: Recorder | None = None) -> tuple[TestClient, Recorder, Recorder]:
    event, inventory = event or Recorder(), Recorder()
    fakes = {n: Recorder() for n in ("user", "payment", "notification", "media", "analytics")}
    application = create_app(SETTINGS, Services(event=event, **fakes))  # type: ignore[arg-type]
    application.state.inventory = inventory
    application.state.known_events = BoundedDict(100)
    return TestClient(application), event, inventory


def auth(user_id: str = "u1") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(SETTINGS, user_id)}"}


def test_an_unseen_event_is_reserved_straight_on_the_inventory_and_then_known() -> None:
    client, event, inventory = app()
    body = {"ticket_type_id": "tt", "quantity": 2}
    first = client.post("/api/v1/events/e1/registrations", json=body, headers=auth())
    second = client.post("/api/v1/events/e1/registrations", json=body,
                         headers=auth() | {"Idempotency-Key": "k-7"})
    assert first.status_code == second.status_code == 201
    assert event.calls == []
    assert "e1" in client.app.state.known_events  # type: ignore[attr-defined]
    assert [c[:7] for c in inventory.calls][1] == (
        "e1", "reserve", "u1", "tt", 2, "full", "k-7")


class Hidden(Recorder):
    """An event service for which the caller may not see the event."""

    async def call(self, *args: Any) -> Any:
        from serve.common.errors import NotFound

        self.calls.append(args)
        raise NotFound("no event e1")


def test_a_refusal_on_an_unseen_event_is_answered_by_the_event_service() -> None:
    client, hidden, _ = app(Hidden())
    client.app.state.inventory = SoldOut()  # type: ignore[attr-defined]
    url = "/api/v1/events/e1/registrations"
    answer = client.post(url, json={"ticket_type_id": "tt"}, headers=auth())
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert [c[0] for c in hidden.calls] == ["register"]
    assert "e1" not in client.app.state.known_events  # type: ignore[attr-defined]


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


class SoldOut(Recorder):
    async def reserve(self, *args: Any) -> Any:
        from serve.common.errors import Conflict

        raise Conflict("no seats left of this ticket type", slug="sold-out", available=0)


def test_a_known_event_is_reserved_on_the_fast_path_with_the_routes_answers() -> None:
    client, event, inventory = app()
    client.app.state.known_events["e1"] = True  # type: ignore[attr-defined]
    url = "/api/v1/events/e1/registrations"
    ok = client.post(url, json={"ticket_type_id": "tt"}, headers=auth("u9"))
    assert ok.status_code == 201 and ok.json() == {"id": "r1", "status": "pending_payment"}
    assert ok.headers["x-correlation-id"]
    [(event_id, _, user, tt, quantity, mode, key, cid)] = inventory.calls
    assert (event_id, user, tt, quantity, mode) == ("e1", "u9", "tt", 1, "full")
    assert len(key) == 32 and cid == ok.headers["x-correlation-id"]  # a key of its own
    # What the fast path does not answer, the route answers as before (nothing reserved).
    assert client.post(url, json={"ticket_type_id": "tt"}).status_code == 401
    bad = client.post(url, json={"ticket_type_id": "tt", "quantity": 0}, headers=auth())
    assert bad.status_code == 422 and bad.json()["type"].endswith("/validation-error")
    long_key = client.post(url, json={"ticket_type_id": "tt"},
                           headers=auth() | {"Idempotency-Key": "k" * 201})
    assert long_key.status_code == 422
    assert len(inventory.calls) == 1 and event.calls == []


def test_a_fast_path_refusal_is_the_same_problem_the_route_gives() -> None:
    client, _, _ = app()
    client.app.state.inventory = SoldOut()  # type: ignore[attr-defined]
    client.app.state.known_events["e1"] = True  # type: ignore[attr-defined]
    url = "/api/v1/events/e1/registrations"
    body = b'{"ticket_type_id": "tt"}'
    # A JSON media type other than application/json is left to the route, which calls the
    # same inventory: both answers must be the same problem.
    answers = [client.post(url, content=body, headers=auth() | {"Content-Type": media})
               for media in ("application/json", "application/merge-patch+json")]
    fast, route = answers
    assert fast.status_code == route.status_code == 409
    assert fast.headers["content-type"] == route.headers["content-type"] == \
        "application/problem+json"
    assert fast.json() == route.json() == {
        "type": "https://afisha.dev/problems/sold-out", "title": "Conflict", "status": 409,
        "detail": "no seats left of this ticket type", "instance": url, "available": 0}
