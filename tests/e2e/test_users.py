"""The user service through the running platform: Ray handles, Postgres, the outbox."""

from __future__ import annotations

import time
import uuid

import jwt

from tests.e2e.conftest import ADMIN_EMAIL, RunningPlatform

PASSWORD = "e2e password 123"


def auth(body: dict[str, object]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['access_token']}"}


def test_registration_organization_flow_and_token_rotation(platform: RunningPlatform) -> None:
    with platform.client() as http:
        user = http.post("/api/v1/auth/register", json={
            "email": f"e2e-{uuid.uuid4().hex[:8]}@example.org", "password": PASSWORD,
            "display_name": "E2E"})
        assert user.status_code == 201, user.text
        body = user.json()
        assert set(body) >= {"user", "access_token", "refresh_token", "token_type", "expires_in"}
        admin = http.post("/api/v1/auth/register", json={
            "email": ADMIN_EMAIL, "password": PASSWORD, "display_name": "Admin"})
        if admin.status_code == 409:
            admin = http.post("/api/v1/auth/login",
                              json={"email": ADMIN_EMAIL, "password": PASSWORD})
        assert admin.json()["user"]["roles"] == ["admin"]

        request = http.post("/api/v1/organization-requests", headers=auth(body),
                            json={"name": f"E2E {uuid.uuid4().hex[:6]}", "description": "x"})
        assert request.status_code == 201 and request.json()["status"] == "pending"
        request_id = request.json()["id"]
        assert http.post(f"/api/v1/organization-requests/{request_id}/approve",
                         headers=auth(body)).status_code == 403
        approved = http.post(f"/api/v1/organization-requests/{request_id}/approve",
                             headers=auth(admin.json()))
        assert approved.json()["status"] == "approved"
        org = http.post("/api/v1/organizations", headers=auth(body),
                        json={"request_id": request_id})
        assert org.status_code == 201
        members = http.get(f"/api/v1/organizations/{org.json()['id']}/members",
                           headers=auth(body)).json()
        assert [(m["user_id"], m["role"]) for m in members["items"]] == \
            [(body["user"]["id"], "owner")]

        rotated = http.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert rotated.status_code == 200
        reused = http.post("/api/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
        assert reused.status_code == 401
        assert http.post("/api/v1/auth/refresh", json={
            "refresh_token": rotated.json()["refresh_token"]}).status_code == 401


def test_protected_routes_refuse_missing_and_forged_tokens(platform: RunningPlatform) -> None:
    now = int(time.time())
    unsigned = jwt.encode({"iss": "afisha", "aud": "afisha-api", "sub": str(uuid.uuid4()),
                           "iat": now, "exp": now + 60, "typ": "access", "roles": ["admin"]},
                          key=None, algorithm="none")
    with platform.client() as http:
        for headers in ({}, {"Authorization": f"Bearer {unsigned}"}):
            response = http.get("/api/v1/organization-requests", headers=headers)
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
        wrong = http.post("/api/v1/auth/login", json={"email": "nobody@example.org",
                                                      "password": "whatever1"})
        assert wrong.status_code == 401 and wrong.json()["type"].endswith("/invalid-credentials")


def test_session_reports_the_token_identity_and_refuses_without_one(
        platform: RunningPlatform) -> None:
    with platform.client() as http:
        user = http.post("/api/v1/auth/register", json={
            "email": f"e2e-{uuid.uuid4().hex[:8]}@example.org", "password": PASSWORD,
            "display_name": "Session"}).json()
        session = http.get("/api/v1/auth/session", headers=auth(user))
        assert session.status_code == 200, session.text
        assert session.json() == {"user_id": user["user"]["id"], "roles": []}
        refused = http.get("/api/v1/auth/session")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        refresh = {"Authorization": f"Bearer {user['refresh_token']}"}
        assert http.get("/api/v1/auth/session", headers=refresh).status_code == 401
