"""Analytics' consumer effect (kept under its first name; see ``serve.analytics.handlers``)."""

from __future__ import annotations

from serve.analytics.handlers import record_domain_event, record_domain_events

__all__ = ["record_domain_event", "record_domain_events"]
