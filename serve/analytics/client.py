"""Typed client of the analytics service (``serve.analytics.deployment.AnalyticsService``).

It has only the methods every service has so far (health, messaging status).
"""

from __future__ import annotations

from serve.common.clients import ClientBase


class AnalyticsClient(ClientBase):
    pass
