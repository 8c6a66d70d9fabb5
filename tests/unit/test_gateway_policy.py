"""Gateway policy without services: which routes are public, budgets, in-process limiter."""

from __future__ import annotations

import pytest

from serve.gateway.auth import bearer_subject, client_ip, is_public
from serve.gateway.ratelimit import MemoryLimiter, budget
from serve.users import tokens
from tests.conftest import make_settings


@pytest.mark.parametrize(("method", "template", "public"), [
    ("POST", "/api/v1/auth/login", True),
    ("POST", "/api/v1/auth/register", True),
    ("GET", "/api/v1/events", True),
    ("GET", "/api/v1/events/{event_id}", True),
    ("GET", "/api/v1/events/{event_id}/ticket-types", True),
    ("POST", "/api/v1/events/{event_id}/ticket-types", False),
    ("POST", "/api/v1/webhooks/{provider}", True),
    ("POST", "/api/v1/analytics/track", True),
    ("POST", "/api/v1/events", False),
    ("PUT", "/api/v1/events/{event_id}", False),
    ("GET", "/api/v1/events/{event_id}/registrations", False),
    ("GET", "/api/v1/users/me", False),
    ("GET", "/api/v1/auth/login", False),
    ("POST", "/api/v1/organization-requests/{request_id}/approve", False),
])
def test_only_the_listed_routes_are_public(method: str, template: str, public: bool) -> None:
    assert is_public(method, template) is public


def test_budgets_by_route() -> None:
    assert budget("POST", "/api/v1/auth/login") == "auth"
    assert budget("POST", "/api/v1/events/e1/registrations") == "reserve"
    assert budget("GET", "/api/v1/events/e1/registrations") == "default"
    assert budget("GET", "/api/v1/users/me") == "default"
    assert budget("POST", "/api/v1/webhooks/yookassa") == "webhook"
    assert budget("POST", "/api/v1/telegram/webhook") == "webhook"
    assert budget("GET", "/actuator/health") is None
    assert budget("GET", "/docs") is None


def test_bearer_subject_only_for_valid_access_tokens() -> None:
    settings = make_settings(jwt_secret="z" * 48)
    access = tokens.issue_access_token(settings, "u-9")
    assert bearer_subject(settings, f"Bearer {access}") == "u-9"
    assert bearer_subject(settings, f"bearer {access}") == "u-9"
    refresh = tokens.issue_refresh_token(settings, "u-9", "f")
    for header in (None, "", f"Bearer {refresh}", "Bearer junk", f"Basic {access}"):
        assert bearer_subject(settings, header) is None


async def test_memory_limiter_allows_the_burst_then_refuses_with_a_wait() -> None:
    limiter = MemoryLimiter()
    decisions = [await limiter.hit("k", 5) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert 1 <= decisions[-1].retry_after <= 12
    assert (await limiter.hit("other", 5)).allowed


def test_client_ip_trusts_forwarded_for_only_when_configured() -> None:
    scope = {"client": ("10.0.0.5", 1234),
             "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.7, 10.0.0.9")]}
    assert client_ip(scope) == "10.0.0.5"
    assert client_ip(scope, 1) == "10.0.0.9"
    assert client_ip(scope, 2) == "203.0.113.7"
    assert client_ip(scope, 9) == "6.6.6.6"
    assert client_ip({"client": None, "headers": []}, 1) is None
