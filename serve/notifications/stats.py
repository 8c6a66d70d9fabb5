"""The bot's ``/stats``: an organizer's signed dashboard links, made by the Analytics service.

``/stats <event id>`` asks Analytics for that event's link on the user's behalf (Analytics
refuses anyone but the event's organizers); ``/stats`` alone lists the events of the
organizations the user owns or moderates (the Analytics report of each) and links up to
MAX_LINKS of them that are not cancelled.
"""

from __future__ import annotations

from serve.analytics.client import AnalyticsClient
from serve.common.context import Identity, RequestContext, correlation_id_var
from serve.users.client import UserClient

MAX_LINKS = 10
ORGANIZER_ROLES = ("owner", "moderator")


class StatsLinks:
    def __init__(self, users: UserClient, analytics: AnalyticsClient) -> None:
        self.users = users
        self.analytics = analytics

    async def links(self, user_id: str, event_id: str | None) -> list[tuple[str, str]]:
        """(title, url) of the dashboards the user may see; empty when they organize
        nothing. A named event that is not theirs raises Analytics' Forbidden."""
        ctx = RequestContext(correlation_id_var.get(), Identity(user_id))
        if event_id is not None:
            link = await self.analytics.dashboard_link(ctx, event_id)
            return [(event_id, str(link["url"]))]
        organizations = await self.users.list_organizations(ctx, None, 50)
        events: list[tuple[str, str]] = []
        for org in organizations.items:
            if org.role not in ORGANIZER_ROLES:
                continue
            report = await self.analytics.report(ctx, org.id, None, None)
            events += [(str(e.get("title") or e["event_id"]), str(e["event_id"]))
                       for e in report["events"] if e.get("status") != "cancelled"]
        found = []
        for title, event in events[:MAX_LINKS]:
            link = await self.analytics.dashboard_link(ctx, event)
            found.append((title, str(link["url"])))
        return found
