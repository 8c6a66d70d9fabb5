"""Event covers: ``cover_media_id`` on POST/PUT /events is validated by the media service
(exists, ready, an image, same organization); events answer their cover's variant URLs; a
medium that is a cover cannot be deleted. Variants are made by Ray tasks here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from actors.client import InventoryClient
from cluster.settings import Settings
from messaging.consumer import ConsumerRuntime
from messaging.envelope import Envelope
from messaging.outbox import outbox_for
from serve.common.context import Identity, RequestContext
from serve.events.service import EventUseCases
from serve.gateway.app import create_app
from serve.gateway.services import Services
from serve.media.client import MediaClient
from serve.media.deployment import MediaService
from serve.users.client import UserClient
from serve.users.deployment import UserService
from tests import media_support as files
from tests.integration.test_media_service import World, organization, signup, upload
from tests.integration.users_support import Absent, LocalClient, admin_email, user_settings

pytestmark = pytest.mark.usefixtures("ray_session")
START = datetime.now(UTC) + timedelta(days=30)


@dataclass
class CoverWorld(World):
    events: Any = None


@pytest.fixture(scope="module")
async def world(migrated_settings: Settings, redis_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CoverWorld]:
    settings = user_settings(migrated_settings, redis_url, media_store="local",
                             data_dir=tmp_path_factory.mktemp("covers"), public_url="http://gw")
    users = UserService(settings.to_runtime())
    service = MediaService(settings.to_runtime(), UserClient(LocalClient("user", users)))
    await service.ready()
    events = EventUseCases(settings, service.sessions, UserClient(LocalClient("user", users)),
                           InventoryClient(settings.to_runtime()))
    from storage.engine import create_engine, sessionmaker

    events.sessions = sessionmaker(create_engine(settings, "event"))
    events.covers = MediaClient(LocalClient("media", service))
    services = Services(user=LocalClient("user", users), event=LocalClient("event", events),
                        payment=Absent(), notification=Absent(),  # type: ignore[arg-type]
                        media=LocalClient("media", service),
                        analytics=Absent())  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(
            settings, services)), base_url="http://gw") as http:
        w = CoverWorld(settings, users, service, http, "local", events=events)
        for role in ("owner", "other_owner"):
            w.tokens[role] = await signup(http)
        w.tokens["admin"] = await signup(http, admin_email(settings))
        w.org = await organization(w, "owner")
        w.other_org = await organization(w, "other_owner")
        yield w
    await service.close()
    await users.close()


async def ready_cover(w: World, role: str = "owner", org: str = "mine") -> str:
    created = await upload(w, files.jpeg(1200, 800), role=role, org=org)
    assert created.status_code == 201, created.text
    await w.media.media.settle()
    media_id = str(created.json()["id"])
    got = (await w.http.get(f"/api/v1/media/{media_id}", headers=w.h(role))).json()
    assert got["status"] == "ready", got
    return media_id


def owner_ctx(w: CoverWorld) -> RequestContext:
    return RequestContext(identity=Identity(str(w.tokens["owner"]["user"]["id"])))


def event_body(w: World, **extra: Any) -> dict[str, Any]:
    return {"organization_id": w.org, "title": f"Gig {uuid.uuid4().hex[:6]}",
            "starts_at": START.isoformat(), "ends_at": (START + timedelta(hours=2)).isoformat(),
            **extra}


async def test_cover_is_validated_attached_and_linked(world: CoverWorld) -> None:
    w = world
    cover = await ready_cover(w)
    created = await w.http.post("/api/v1/events", headers=w.h("owner"),
                                json=event_body(w, cover_media_id=cover))
    assert created.status_code == 201, created.text
    event = created.json()
    assert event["cover_media_id"] == cover
    assert set(event["cover"]) == {"thumb", "card", "cover"}
    fetched = await w.http.get(event["cover"]["thumb"].removeprefix("http://gw"))
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/webp"
    # still a cover: 409
    assert (await w.http.delete(f"/api/v1/media/{cover}",
                                headers=w.h("owner"))).status_code == 409
    detail = await w.http.get(f"/api/v1/events/{event['id']}", headers=w.h("owner"))
    assert set(detail.json()["cover"]) == {"thumb", "card", "cover"}
    await w.events.transition(owner_ctx(w), event["id"], "publish")
    listed = await w.http.get("/api/v1/events", params={"organization_id": w.org})
    assert listed.status_code == 200, listed.text
    mine = [e for e in listed.json()["items"] if e["id"] == event["id"]]
    assert mine and set(mine[0]["cover"]) == {"thumb", "card", "cover"}
    # changing the cover frees the old one
    second = await ready_cover(w)
    changed = await w.http.put(f"/api/v1/events/{event['id']}", headers=w.h("owner"),
                               json={"cover_media_id": second})
    assert changed.status_code == 200, changed.text
    assert changed.json()["cover_media_id"] == second
    assert (await w.http.delete(f"/api/v1/media/{cover}",
                                headers=w.h("owner"))).status_code == 204


async def test_invalid_covers_are_422(world: World) -> None:
    w = world
    foreign = await ready_cover(w, role="other_owner", org=w.other_org)
    doc = await upload(w, files.pdf(), purpose="document", name="d.pdf",
                       content_type="application/pdf")
    for cover in (foreign, doc.json()["id"], str(uuid.uuid4()), "not-a-uuid"):
        refused = await w.http.post("/api/v1/events", headers=w.h("owner"),
                                    json=event_body(w, cover_media_id=cover))
        assert refused.status_code == 422, (cover, refused.text)
        assert refused.json()["type"].endswith("/invalid-cover")
    # BOLA: the other organization's owner cannot attach our medium to their event
    ours = await ready_cover(w)
    stolen = await w.http.post("/api/v1/events", headers=w.h("other_owner"),
                               json=event_body(w, organization_id=w.other_org,
                                               cover_media_id=ours))
    assert stolen.status_code == 422


async def event_messages(w: CoverWorld, event_id: str) -> list[Envelope]:
    """The event service's outbox messages about one event, oldest first."""
    outbox = outbox_for("event")
    async with w.events.sessions() as session:
        rows = (await session.execute(select(outbox.c.envelope).where(
            outbox.c.aggregate_id == event_id).order_by(outbox.c.id))).scalars().all()
    return [Envelope.model_validate(r) for r in rows]


async def consume(w: CoverWorld, event_id: str) -> list[Envelope]:
    """Deliver the event's messages to the media service's consumer (its inbox skips those it
    has already applied), as the relay does."""
    consumer = ConsumerRuntime("media", w.media.sessions, w.media.message_handlers())
    messages = await event_messages(w, event_id)
    await consumer.deliver(messages)
    return messages


async def readers(w: CoverWorld, media_id: str) -> dict[str, tuple[int, int]]:
    """role -> (GET /media/{id}, GET /media/{id}/url) status codes."""
    out = {}
    for role in ("anonymous", "other_owner", "owner", "admin"):
        got = await w.http.get(f"/api/v1/media/{media_id}", headers=w.h(role))
        link = await w.http.get(f"/api/v1/media/{media_id}/url", headers=w.h(role),
                                params={"variant": "thumb"})
        out[role] = (got.status_code, link.status_code)
    return out


PRIVATE = {"anonymous": (404, 404), "other_owner": (404, 404), "owner": (200, 200),
           "admin": (200, 200)}
PUBLIC = dict.fromkeys(PRIVATE, (200, 200))


async def test_cover_is_public_only_while_its_event_is_published_and_public(
        world: CoverWorld) -> None:
    w = world
    cover = await ready_cover(w)
    assert await readers(w, cover) == PRIVATE  # attached to no event
    created = await w.http.post("/api/v1/events", headers=w.h("owner"),
                                json=event_body(w, cover_media_id=cover))
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    await consume(w, event_id)
    assert await readers(w, cover) == PRIVATE  # a draft's cover
    await w.events.transition(owner_ctx(w), event_id, "publish")
    [*_, published] = await consume(w, event_id)
    assert published.type == "event.published"
    assert published.data["status"] == "published" and published.data["visibility"] == "public"
    assert await readers(w, cover) == PUBLIC
    # BOLA: readable is not deletable
    assert (await w.http.delete(f"/api/v1/media/{cover}",
                                headers=w.h("other_owner"))).status_code == 403
    await w.events.transition(owner_ctx(w), event_id, "unpublish")
    [*_, unpublished] = await consume(w, event_id)
    assert unpublished.type == "event.unpublished"
    assert await readers(w, cover) == PRIVATE
    # the older "published" message arriving again (a new delivery of it) changes nothing
    consumer = ConsumerRuntime("media", w.media.sessions, w.media.message_handlers())
    await consumer.deliver([published.model_copy(update={"id": uuid.uuid4()})])
    assert await readers(w, cover) == PRIVATE
    await w.events.transition(owner_ctx(w), event_id, "publish")
    await consume(w, event_id)
    assert await readers(w, cover) == PUBLIC
    # a new cover of a published event is public at once; the old one is private again
    second = await ready_cover(w)
    changed = await w.http.put(f"/api/v1/events/{event_id}", headers=w.h("owner"),
                               json={"cover_media_id": second})
    assert changed.status_code == 200, changed.text
    assert await readers(w, second) == PUBLIC
    assert await readers(w, cover) == PRIVATE
    await w.events.transition(owner_ctx(w), event_id, "cancel")
    [*_, cancelled] = await consume(w, event_id)
    assert cancelled.type == "event.cancelled"
    assert await readers(w, second) == PRIVATE


async def test_avatars_are_readable_by_anyone(world: CoverWorld) -> None:
    w = world
    created = await upload(w, files.jpeg(200, 200), purpose="avatar", org=None)
    assert created.status_code == 201, created.text
    await w.media.media.settle()
    assert await readers(w, created.json()["id"]) == PUBLIC
