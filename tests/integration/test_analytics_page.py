"""The dashboard page in a real headless Chromium (Debian ``chromium`` + ``chromedriver``):
the signed link from the API opens a page that renders its charts without any network beyond
the platform, and every number on it equals the JSON dashboard's."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from selenium.webdriver.common.by import By

from cluster.settings import Settings
from tests.browser import offline_chromium, resources
from tests.integration.analytics_support import (
    BROWSER,
    History,
    days,
    organization,
    start_platform,
)
from tests.integration.users_support import register, user_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_page(url: str) -> dict[str, Any]:
    with offline_chromium() as driver:
        driver.get(url)
        figures = {e.get_attribute("data-figure"): e.text
                   for e in driver.find_elements(By.CSS_SELECTOR, "[data-figure]")}
        funnel = {e.get_attribute("data-funnel"): e.text
                  for e in driver.find_elements(By.CSS_SELECTOR, "[data-funnel]")}
        svgs = driver.find_elements(By.TAG_NAME, "svg")
        sizes = [(s.size["width"], s.size["height"]) for s in svgs]
        bars = len(driver.find_elements(By.CSS_SELECTOR, "svg rect"))
        return {"title": driver.title, "figures": figures, "funnel": funnel, "sizes": sizes,
                "bars": bars, "resources": resources(driver)}


@pytest.mark.timeout(180)
async def test_the_signed_dashboard_page_renders_the_json_dashboards_numbers(
        migrated_settings: Settings) -> None:
    port = free_port()
    settings = user_settings(migrated_settings, None, public_url=f"http://127.0.0.1:{port}")
    p = await start_platform(settings)
    server = uvicorn.Server(uvicorn.Config(p.app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    try:
        owner = await register(p.users)
        p.tokens["owner"] = owner
        org = await organization(p.users, owner, p.identity("admin"))
        d1, d2 = days()
        h = History(event_id=str(uuid.uuid4()), organization_id=org, day1=d1, day2=d2)
        h.build(title="Jazz <night>")
        await p.consumer.deliver(h.envelopes)
        ts = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
        r = await p.http.post("/api/v1/analytics/track", headers={"User-Agent": BROWSER},
                              json={"items": [{"type": "page_view", "event_id": h.event_id,
                                               "path": "/e", "ts": ts}] * 2})
        assert r.status_code == 202
        dash = (await p.http.get(f"/api/v1/analytics/events/{h.event_id}/dashboard",
                                 headers=p.headers("owner"))).json()
        link = (await p.http.get(f"/api/v1/analytics/events/{h.event_id}/dashboard/link",
                                 headers=p.headers("owner"))).json()
        assert link["url"].startswith(f"http://127.0.0.1:{port}/api/v1/analytics/pages/")
        serving = asyncio.create_task(server.serve())
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        page = await asyncio.to_thread(read_page, link["url"])
        tampered = await asyncio.to_thread(read_page, link["url"].replace("signature=",
                                                                          "signature=00"))
    finally:
        server.should_exit = True
        if "serving" in locals():
            await serving
        await p.http.aclose()
        await p.analytics.close()
        await p.users.close()

    assert page["title"] == "Analytics · Jazz <night>"
    t = dash["totals"]
    f = page["figures"]
    for key in ("page_views", "unique_visitors", "reservations", "confirmed", "cancelled",
                "expired", "checked_in", "waitlist"):
        assert f[key] == str(t[key]), key
    assert f["seats_left"] == "—" and t["seats_left"] is None
    assert f["attendance_rate"] == str(dash["attendance_rate"])
    for money in t["revenue"]:
        for part in ("gross", "refunded", "net"):
            assert f[f"revenue.{money['currency']}.{part}"] == str(money[part])
    for step in dash["funnel"]:
        shown = page["funnel"][step["step"]]
        assert shown.split(" ")[0] == str(step["count"])
    assert len(page["sizes"]) == 4 and all(w > 0 and h > 0 for w, h in page["sizes"])
    assert page["bars"] >= len(dash["series"])
    assert page["resources"] == []  # nothing fetched: no script, font or image from anywhere
    assert "Analytics" not in tampered["title"]
