"""The gateway's read cache on the running platform: anonymous event reads are kept past the
short TTL while the replica hears the event service's read changes, and a change committed
anywhere (here: straight in the database, as another replica or an operator would) reaches
them at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from messaging.relay import asyncpg_dsn
from tests.e2e.conftest import RunningPlatform
from tests.e2e.test_event_flow import account, auth, organization


def wait_for(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.05)


def in_a_row(http: httpx.Client, path: str, check: Callable[[httpx.Response], bool],
             times: int = 20) -> Callable[[], bool]:
    """True once ``times`` answers in a row pass ``check``: with several gateway replicas
    behind the load balancer, each of them has answered."""
    def passes() -> bool:
        return all(check(http.get(path)) for _ in range(times))
    return passes


async def retitle(database_url: str, event_id: str, title: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("UPDATE event_service.events SET title = $2, updated_at = now() "
                           "WHERE id = $1", event_id, title)
    finally:
        await conn.close()


def test_event_reads_are_kept_until_the_database_says_they_changed(
        platform: RunningPlatform) -> None:
    start = datetime.now(UTC) + timedelta(days=40)
    with platform.client() as http:
        wait_for(in_a_row(http, "/actuator/health", lambda r: r.json()["services"]["gateway"]
                          .get("read_changes") == "listening", times=10))
        owner = account(http, f"reads-{uuid.uuid4().hex[:8]}@example.org")
        org_id = organization(http, owner)
        created = http.post("/api/v1/events", headers=auth(owner), json={
            "organization_id": org_id, "title": "Before", "venue": "Hall",
            "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=2)).isoformat(),
            "visibility": "public", "participants_visibility": "closed"})
        event_id = created.json()["id"]
        assert http.post(f"/api/v1/events/{event_id}/publish",
                         headers=auth(owner)).status_code == 200
        path = f"/api/v1/events/{event_id}"
        wait_for(in_a_row(http, path, lambda r: r.headers.get("x-cache") == "HIT"
                          and r.json()["title"] == "Before"))
        time.sleep(1.5)  # past AFISHA_LOCAL_CACHE_TTL_SECONDS (1 s): kept, nothing changed
        assert in_a_row(http, path, lambda r: r.headers.get("x-cache") == "HIT")()

        asyncio.run(retitle(platform.database_url, event_id, "After"))
        wait_for(in_a_row(http, path, lambda r: r.json()["title"] == "After"), seconds=10)
