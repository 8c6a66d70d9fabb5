"""The media service over HTTP with the real user service, Postgres and both object stores
(a local directory, and S3 through moto's server mode started here).

Upload -> variants -> signed URL fetch -> delete on each store; the hostile list; BOLA.
"""

from __future__ import annotations

import asyncio
import io
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select, update

from cluster.settings import Settings
from messaging.outbox import outbox_for
from serve.common.context import RequestContext
from serve.gateway.app import create_app
from serve.gateway.services import Services
from serve.media.deployment import MediaService
from serve.users.client import UserClient
from serve.users.deployment import UserService
from storage.media import media
from tests import media_support as files
from tests.integration.users_support import (
    PASSWORD,
    Absent,
    LocalClient,
    admin_email,
    bearer,
    email,
    user_settings,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass
class World:
    settings: Settings
    users: UserService
    media: MediaService
    http: httpx.AsyncClient
    store: str
    org: str = ""
    other_org: str = ""
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    def h(self, role: str) -> dict[str, str]:
        return {} if role == "anonymous" else bearer(self.tokens[role])


async def signup(http: httpx.AsyncClient, address: str | None = None) -> dict[str, Any]:
    response = await http.post("/api/v1/auth/register", json={
        "email": address or email(), "password": PASSWORD, "display_name": "Member"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def organization(w: World, owner: str) -> str:
    http = w.http
    created = await http.post("/api/v1/organization-requests", headers=w.h(owner),
                              json={"name": f"Org {uuid.uuid4().hex[:8]}", "description": "d"})
    assert created.status_code == 201, created.text
    approved = await http.post(f"/api/v1/organization-requests/{created.json()['id']}/approve",
                               headers=w.h("admin"))
    assert approved.status_code == 200, approved.text
    org = await http.post("/api/v1/organizations", headers=w.h(owner),
                          json={"request_id": created.json()["id"]})
    assert org.status_code == 201, org.text
    return str(org.json()["id"])


@pytest.fixture(scope="module", params=["local", "s3"])
async def world(request: pytest.FixtureRequest, migrated_settings: Settings, redis_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    kind = request.param
    extra: dict[str, Any] = {"data_dir": tmp_path_factory.mktemp(f"media-{kind}"),
                             "media_store": kind, "public_url": "http://gw"}
    if kind == "s3":
        extra |= {"s3_endpoint": request.getfixturevalue("moto_endpoint"),
                  "s3_access_key": "testing", "s3_secret_key": "testing",
                  "s3_bucket": f"afisha-media-{uuid.uuid4().hex[:8]}"}
    settings = user_settings(migrated_settings, redis_url, **extra)
    users = UserService(settings.to_runtime())
    service = MediaService(settings.to_runtime(), UserClient(LocalClient("user", users)))
    await service.ready()
    services = Services(user=LocalClient("user", users), event=Absent(),  # type: ignore[arg-type]
                        payment=Absent(), notification=Absent(),  # type: ignore[arg-type]
                        media=LocalClient("media", service),
                        analytics=Absent())  # type: ignore[arg-type]
    app = create_app(settings, services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as http:
        w = World(settings, users, service, http, kind)
        for role in ("owner", "outsider", "other_owner"):
            w.tokens[role] = await signup(http)
        w.tokens["admin"] = await signup(http, admin_email(settings))
        w.org = await organization(w, "owner")
        w.other_org = await organization(w, "other_owner")
        yield w
    await service.close()
    await users.close()


async def upload(w: World, data: bytes, *, role: str = "owner", purpose: str = "event_cover",
                 name: str = "photo.jpg", content_type: str = "image/jpeg",
                 org: str | None = "mine") -> httpx.Response:
    fields = {"purpose": purpose}
    if org:
        fields["organization_id"] = w.org if org == "mine" else org
    return await w.http.post("/api/v1/media/upload", headers=w.h(role), data=fields,
                             files={"file": (name, data, content_type)})


async def fetch(w: World, url: str) -> httpx.Response:
    if w.store == "local":
        parts = urlsplit(url)
        return await w.http.get(parts.path + "?" + parts.query)
    async with httpx.AsyncClient() as client:
        return await client.get(url)


async def ready(w: World, media_id: str) -> dict[str, Any]:
    await w.media.media.settle()
    response = await w.http.get(f"/api/v1/media/{media_id}", headers=w.h("owner"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def snapshot(w: World) -> tuple[int, int]:
    async with w.media.sessions() as session:
        rows = int(await session.scalar(select(func.count()).select_from(media)) or 0)
    return rows, len(await w.media.store.list())


async def test_upload_variants_signed_url_delete(world: World) -> None:
    w = world
    original = files.jpeg(2000, 1000, gps=True)
    assert files.has_gps(original)
    created = await upload(w, original, name="../../etc/pa\x01ss\nwd.jpg")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "processing" and body["content_type"] == "image/jpeg"
    assert body["organization_id"] == w.org and body["purpose"] == "event_cover"
    kept = body["file_name"]
    assert kept.endswith("wd.jpg") and kept.isprintable(), kept
    assert "/" not in kept and "\\" not in kept and ".." not in kept
    medium = await ready(w, body["id"])
    assert medium["status"] == "ready", medium
    assert {k: (v["width"], v["height"], v["content_type"])
            for k, v in medium["variants"].items()} == {
        "thumb": (160, 160, "image/webp"), "card": (640, 360, "image/webp"),
        "cover": (1600, 800, "image/webp")}
    for variant in ("original", "thumb", "card", "cover"):
        link = await w.http.get(f"/api/v1/media/{body['id']}/url", headers=w.h("owner"),
                                params={"variant": variant, "expires_in": 60})
        assert link.status_code == 200, link.text
        got = await fetch(w, link.json()["url"])
        assert got.status_code == 200, got.text
        assert not files.has_gps(got.content)
        image = Image.open(io.BytesIO(got.content))
        expected = (2000, 1000) if variant == "original" else (
            medium["variants"][variant]["width"], medium["variants"][variant]["height"])
        assert image.size == expected
    # EXIF GPS is absent from every stored object
    for obj in await w.media.store.list():
        if obj.key.startswith(uuid.UUID(body["id"]).hex):
            assert not files.has_gps(await w.media.store.get(obj.key))
    async with w.media.sessions() as session:
        published = await session.scalar(select(func.count()).select_from(
            outbox_for("media")).where(outbox_for("media").c.aggregate_id == body["id"]))
    assert published == 1
    # BOLA: another organization's owner cannot delete it (nor see it: a cover of no event)
    refused = await w.http.delete(f"/api/v1/media/{body['id']}", headers=w.h("other_owner"))
    assert refused.status_code == 404
    gone = await w.http.delete(f"/api/v1/media/{body['id']}", headers=w.h("owner"))
    assert gone.status_code == 204
    assert not [o for o in await w.media.store.list()
                if o.key.startswith(uuid.UUID(body["id"]).hex)]
    assert (await w.http.get(f"/api/v1/media/{body['id']}")).status_code == 404


HOSTILE = [
    ("png-declared-jpeg", lambda: files.png(), "a.jpg", "image/jpeg", 415),
    ("jpeg-declared-png", lambda: files.jpeg(100, 100), "a.png", "image/png", 415),
    ("html-named-png", lambda: files.HTML, "x.png", "image/png", 415),
    ("php-named-png", lambda: files.PHP, "x.png", "image/png", 415),
    ("svg-named-png", lambda: files.SVG, "x.png", "image/png", 415),
    ("jpeg-zip-polyglot", lambda: files.jpeg(100, 100) + files.zip_bytes(), "a.jpg",
     "image/jpeg", 415),
    ("truncated-jpeg", lambda: files.jpeg(800, 600)[:3000], "a.jpg", "image/jpeg", 422),
    ("decompression-bomb", lambda: files.bomb_png(), "a.png", "image/png", 422),
    ("empty", lambda: b"", "a.png", "image/png", 422),
    ("six-mb-image", lambda: files.noise_png(1500, 1400), "a.png", "image/png", 413),
]


@pytest.mark.parametrize(("make", "name", "declared", "expected"),
                         [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
async def test_hostile_uploads_are_refused_and_leave_nothing(
        world: World, make: Any, name: str, declared: str, expected: int) -> None:
    data = make()
    if expected == 413:
        assert len(data) > 5 * 1024 * 1024
    before = await snapshot(world)
    response = await upload(world, data, name=name, content_type=declared)
    assert response.status_code == expected, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await snapshot(world) == before


async def test_fifty_mb_body_is_refused_with_bounded_reads(world: World) -> None:
    boundary = "afishaboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            f"event_cover\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    chunk = 64 * 1024
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        sent += len(head) + 16
        yield head + b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
        for _ in range(50 * 1024 * 1024 // chunk):
            sent += chunk
            yield b"\x00" * chunk

    before = await snapshot(world)
    response = await world.http.post(
        "/api/v1/media/upload", content=body(), headers={
            **world.h("owner"), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text
    assert sent <= 5 * 1024 * 1024 + 4 * chunk, sent  # the rest was never read
    assert await snapshot(world) == before
    # a declared length past the limit is refused before any of the body is read
    sent = 0
    declared = await world.http.post(
        "/api/v1/media/upload", content=body(), headers={
            **world.h("owner"), "Content-Length": str(50 * 1024 * 1024),
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert declared.status_code == 413
    assert sent <= len(head) + 16 + chunk


async def test_animated_gif_keeps_original_and_pdf_document(world: World) -> None:
    gif = files.animated_gif()
    created = await upload(world, gif, name="anim.gif", content_type="image/gif")
    assert created.status_code == 201, created.text
    medium = await ready(world, created.json()["id"])
    assert medium["status"] == "ready" and set(medium["variants"]) == {"thumb", "card", "cover"}
    link = (await world.http.get(f"/api/v1/media/{medium['id']}/url",
                                 headers=world.h("owner"))).json()["url"]
    assert (await fetch(world, link)).content == gif
    doc = await upload(world, files.pdf(), purpose="document", name="terms.pdf",
                       content_type="application/pdf")
    assert doc.status_code == 201, doc.text
    assert doc.json()["content_type"] == "application/pdf"
    # a document as an event cover is refused
    refused = await upload(world, files.pdf(), name="c.pdf", content_type="application/pdf")
    assert refused.status_code == 415


async def test_private_document_bola(world: World) -> None:
    w = world
    doc = await upload(w, files.pdf(), purpose="document", name="contract.pdf",
                       content_type="application/pdf")
    assert doc.status_code == 201, doc.text
    media_id = doc.json()["id"]
    for role, expected in (("anonymous", 404), ("outsider", 404), ("other_owner", 404),
                           ("owner", 200), ("admin", 200)):
        got = await w.http.get(f"/api/v1/media/{media_id}", headers=w.h(role))
        assert got.status_code == expected, (role, got.text)
        link = await w.http.get(f"/api/v1/media/{media_id}/url", headers=w.h(role))
        assert link.status_code == expected, (role, link.text)
    # uploading into another organization is refused
    foreign = await upload(w, files.jpeg(100, 100), role="outsider", org=w.org)
    assert foreign.status_code == 403
    assert (await w.http.delete(f"/api/v1/media/{media_id}",
                                headers=w.h("other_owner"))).status_code == 404


async def test_signed_url_tampered_or_expired_is_403(world: World) -> None:
    w = world
    created = await upload(w, files.jpeg(300, 200))
    media_id = created.json()["id"]
    await ready(w, media_id)
    if w.store == "s3":  # presigned by the S3 client: the store checks it, for that long
        url = (await w.http.get(f"/api/v1/media/{media_id}/url", headers=w.h("owner"),
                                params={"expires_in": 90})).json()["url"]
        query = parse_qs(urlsplit(url).query)
        assert query["X-Amz-Expires"] == ["90"] and query["X-Amz-Signature"][0]
        assert (await fetch(w, url)).status_code == 200
        return
    url = (await w.http.get(f"/api/v1/media/{media_id}/url", headers=w.h("owner"),
                            params={"expires_in": 1})).json()["url"]
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert (await fetch(w, url)).status_code == 200
    tampered = url.replace(query["signature"][0], "0" * 64)
    assert (await fetch(w, tampered)).status_code == 403
    other_key = parts.path.replace("original.jpg", "thumb.webp")
    assert (await w.http.get(other_key + "?" + parts.query)).status_code == 403
    later = url.replace(f"expires={query['expires'][0]}",
                        f"expires={int(query['expires'][0]) + 3600}")
    assert (await fetch(w, later)).status_code == 403
    await asyncio.sleep(2.1)
    expired = await fetch(w, url)
    assert expired.status_code == 403
    assert expired.headers["content-type"] == "application/problem+json"
    bad = await w.http.get(f"/api/v1/media/{media_id}/url", headers=w.h("owner"),
                           params={"expires_in": 0})
    assert bad.status_code == 422


async def test_health_shows_the_store(world: World) -> None:
    health = await world.media.health(RequestContext())
    assert health["components"]["object_store"]["status"] == "UP", health
    assert health["components"]["object_store"]["store"] == world.store


async def test_sweep_removes_orphans_and_stray_objects(world: World) -> None:
    w = world
    created = await upload(w, files.jpeg(300, 200))
    media_id = created.json()["id"]
    await ready(w, media_id)
    stray = f"{uuid.uuid4().hex}/original.jpg"
    await w.media.store.put(stray, b"partial", "image/jpeg")
    async with w.media.sessions() as session, session.begin():
        await session.execute(update(media).where(media.c.id == uuid.UUID(media_id)).values(
            created_at=func.now() - func.make_interval(0, 0, 0, 2)))
    from datetime import UTC, datetime, timedelta

    counts = await w.media.media.sweep(datetime.now(UTC) + timedelta(hours=2))
    assert counts["orphans"] >= 1 and counts["objects"] >= 1
    keys = [o.key for o in await w.media.store.list()]
    assert stray not in keys
    assert not [k for k in keys if k.startswith(uuid.UUID(media_id).hex)]
    assert (await w.http.get(f"/api/v1/media/{media_id}")).status_code == 404

