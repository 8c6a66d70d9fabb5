"""Analytics at the gateway: which routes are public (tracking and the signed links only) and
which rate budget tracking spends."""

from __future__ import annotations

from cluster.settings import Settings
from serve.gateway.auth import is_public
from serve.gateway.ratelimit import budget, limit_of


def test_only_tracking_and_signed_links_are_public() -> None:
    assert is_public("POST", "/api/v1/analytics/track")
    assert is_public("GET", "/api/v1/analytics/pages/dashboard")
    assert is_public("GET", "/api/v1/analytics/exports/{export_id}/download")
    for method, path in (("GET", "/api/v1/analytics/events/{event_id}/dashboard"),
                         ("GET", "/api/v1/analytics/events/{event_id}/dashboard/link"),
                         ("GET", "/api/v1/analytics/organizations/{organization_id}/report"),
                         ("POST", "/api/v1/analytics/export"),
                         ("GET", "/api/v1/analytics/exports/{export_id}")):
        assert not is_public(method, path), path


def test_tracking_has_its_own_rate_budget() -> None:
    assert budget("POST", "/api/v1/analytics/track") == "track"
    assert budget("GET", "/api/v1/analytics/events/e/dashboard") == "default"
    settings = Settings.model_validate({"rate_limit_track_per_minute": 7})
    assert limit_of(settings, "track") == 7
    assert limit_of(Settings.model_validate({}), "track") == 120
