"""The media service through the running platform: a streamed upload to the gateway, the
media replica over its Ray handle, variants made by Ray tasks, the local store's signed URL."""

from __future__ import annotations

import io
import time
import uuid

from PIL import Image

from tests import media_support as files
from tests.e2e.conftest import ADMIN_EMAIL, RunningPlatform

PASSWORD = "e2e password 123"


def auth(body: dict[str, object]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['access_token']}"}


def test_upload_variants_and_signed_url(platform: RunningPlatform) -> None:
    with platform.client() as http:
        owner = http.post("/api/v1/auth/register", json={
            "email": f"e2e-media-{uuid.uuid4().hex[:8]}@example.org", "password": PASSWORD,
            "display_name": "Media"}).json()
        admin = http.post("/api/v1/auth/register", json={
            "email": ADMIN_EMAIL, "password": PASSWORD, "display_name": "Admin"})
        if admin.status_code == 409:
            admin = http.post("/api/v1/auth/login",
                              json={"email": ADMIN_EMAIL, "password": PASSWORD})
        request = http.post("/api/v1/organization-requests", headers=auth(owner),
                            json={"name": f"Media {uuid.uuid4().hex[:6]}", "description": "x"})
        http.post(f"/api/v1/organization-requests/{request.json()['id']}/approve",
                  headers=auth(admin.json()))
        org = http.post("/api/v1/organizations", headers=auth(owner),
                        json={"request_id": request.json()["id"]}).json()["id"]
        created = http.post("/api/v1/media/upload", headers=auth(owner),
                            data={"purpose": "event_cover", "organization_id": org},
                            files={"file": ("cover.jpg", files.jpeg(1800, 1200, gps=True),
                                            "image/jpeg")})
        assert created.status_code == 201, created.text
        media_id = created.json()["id"]
        deadline = time.monotonic() + 60
        medium = created.json()
        while medium["status"] == "processing" and time.monotonic() < deadline:
            time.sleep(0.5)
            medium = http.get(f"/api/v1/media/{media_id}", headers=auth(owner)).json()
        assert medium["status"] == "ready", medium
        assert medium["variants"]["cover"]["width"] == 1350
        url = http.get(f"/api/v1/media/{media_id}/url", params={"variant": "card"},
                       headers=auth(owner)).json()["url"]
        image = http.get(url)
        assert image.status_code == 200, image.text
        assert Image.open(io.BytesIO(image.content)).size == (640, 360)
        assert http.get(url.replace("signature=", "signature=0")).status_code == 403
        health = http.get("/actuator/health").json()
        assert health["services"]["media"]["components"]["object_store"]["store"] == "local"
        assert http.delete(f"/api/v1/media/{media_id}", headers=auth(owner)).status_code == 204
