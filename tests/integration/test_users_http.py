"""The gateway app over HTTP with the real user service, Postgres and Redis (no Ray).

The organization flow of SPEC, a role x route matrix (refusals leave no trace), and the
attack list on tokens, Telegram payloads and ``PATCH /users/me``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from cluster.settings import Settings, reveal
from messaging.outbox import outbox_for
from serve.common.context import Identity, RequestContext
from serve.common.errors import Forbidden, NotFound, Unauthorized
from serve.users import tokens
from serve.users.deployment import UserService
from serve.users.schemas import GroupIn
from storage.user import (
    group_members,
    groups,
    invites,
    organization_members,
    organization_requests,
    users,
)
from tests.integration.users_support import (
    PASSWORD,
    admin_email,
    bearer,
    email,
    gateway,
    user_settings,
    widget,
)


@dataclass
class World:
    settings: Settings
    service: UserService
    http: httpx.AsyncClient
    org: str = ""
    group: str = ""
    pending_request: str = ""
    owner_request: str = ""
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    def headers(self, role: str) -> dict[str, str]:
        return {} if role == "anonymous" else bearer(self.tokens[role])

    def user_id(self, role: str) -> str:
        return str(self.tokens[role]["user"]["id"])


async def signup(http: httpx.AsyncClient, address: str | None = None) -> dict[str, Any]:
    response = await http.post("/api/v1/auth/register", json={
        "email": address or email(), "password": PASSWORD, "display_name": "Member"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def accept(http: httpx.AsyncClient, invite: dict[str, Any], who: dict[str, Any]) -> None:
    response = await http.post(f"/api/v1/invites/{invite['token']}/accept", headers=bearer(who))
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
async def world(migrated_settings: Settings, redis_url: str) -> AsyncIterator[World]:
    settings = user_settings(migrated_settings, redis_url)
    service = UserService(settings.to_runtime())
    async with gateway(settings, service) as http:
        w = World(settings, service, http)
        for role in ("owner", "moderator", "group_member", "outsider"):
            w.tokens[role] = await signup(http)
        w.tokens["admin"] = await signup(http, admin_email(settings))
        await build_organization(w)
        yield w
    await service.close()


async def build_organization(w: World) -> None:
    """SPEC's flow: request -> admin approves -> requester creates it -> invites."""
    http, owner = w.http, w.headers("owner")
    created = await http.post("/api/v1/organization-requests", headers=owner,
                              json={"name": f"Org {uuid.uuid4().hex[:8]}", "description": "d"})
    assert created.status_code == 201 and created.json()["status"] == "pending"
    w.owner_request = created.json()["id"]
    approved = await http.post(f"/api/v1/organization-requests/{w.owner_request}/approve",
                               headers=w.headers("admin"))
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    org = await http.post("/api/v1/organizations", headers=owner,
                          json={"request_id": w.owner_request})
    assert org.status_code == 201 and org.json()["role"] == "owner"
    w.org = org.json()["id"]
    invite = (await http.post(f"/api/v1/organizations/{w.org}/invite", headers=owner,
                              json={"role": "moderator"})).json()
    assert invite["url"] == f"https://t.me/afisha_bot?start={invite['token']}"
    await accept(http, invite, w.tokens["moderator"])
    group = await http.post(f"/api/v1/organizations/{w.org}/groups", headers=owner,
                            json={"name": "VIP"})
    assert group.status_code == 201
    w.group = group.json()["id"]
    await accept(http, (await http.post(f"/api/v1/groups/{w.group}/invite",
                                        headers=owner)).json(), w.tokens["group_member"])
    pending = await http.post("/api/v1/organization-requests", headers=w.headers("outsider"),
                              json={"name": f"Other {uuid.uuid4().hex[:8]}"})
    w.pending_request = pending.json()["id"]


async def snapshot(w: World) -> tuple[Any, ...]:
    async with w.service.sessions() as session:
        members = sorted((await session.execute(select(
            organization_members.c.user_id, organization_members.c.role).where(
            organization_members.c.organization_id == w.org))).all())
        group_count = await session.scalar(select(func.count()).select_from(groups).where(
            groups.c.organization_id == w.org))
        invite_count = await session.scalar(select(func.count()).select_from(invites).where(
            invites.c.organization_id == w.org))
        in_group = await session.scalar(select(func.count()).select_from(group_members).where(
            group_members.c.group_id == w.group))
        requests = (await session.execute(select(
            organization_requests.c.id, organization_requests.c.status).where(
            organization_requests.c.requester_id.in_(
                [w.user_id("owner"), w.user_id("outsider")])))).all()
    return tuple(members), group_count, invite_count, in_group, sorted(requests)


ROLES = ("anonymous", "outsider", "group_member", "moderator", "owner", "admin")
# route -> expected status per role, in ROLES order.
MATRIX: dict[str, tuple[int, ...]] = {
    "GET /users/me": (401, 200, 200, 200, 200, 200),
    "GET /organizations/{org}": (401, 200, 200, 200, 200, 200),
    "GET /organizations/{org}/members": (401, 403, 403, 200, 200, 200),
    "PATCH /organizations/{org}/members/{moderator}": (401, 403, 403, 403, 200, 403),
    "DELETE /organizations/{org}/members/{owner}": (401, 403, 403, 403, 409, 403),
    "DELETE /organizations/{org}/members/{group_member}": (401, 403, 403, 403, 404, 403),
    "POST /organizations/{org}/invite": (401, 403, 403, 403, 201, 403),
    "GET /organizations/{org}/groups": (401, 403, 403, 200, 200, 200),
    "POST /organizations/{org}/groups": (401, 403, 403, 201, 201, 403),
    "GET /groups/{group}/members": (401, 403, 403, 200, 200, 200),
    "POST /groups/{group}/invite": (401, 403, 403, 201, 201, 403),
    "POST /organization-requests/{pending_request}/approve": (401, 403, 403, 403, 403, 200),
    "POST /organization-requests/{owner_request}/reject": (401, 403, 403, 403, 403, 409),
    "POST /organizations": (401, 403, 403, 403, 201, 403),
}
BODIES = {"PATCH": {"role": "moderator"}, "POST /organizations": None}
CASES = [(route, role, expected[i]) for route, expected in MATRIX.items()
         for i, role in enumerate(ROLES)]


@pytest.mark.parametrize(("route", "role", "expected"), CASES,
                         ids=[f"{r}-{who}" for r, who, _ in CASES])
async def test_role_route_matrix(world: World, route: str, role: str, expected: int) -> None:
    method, template = route.split(" ", 1)
    path = "/api/v1" + template.format(
        org=world.org, group=world.group, pending_request=world.pending_request,
        owner_request=world.owner_request,
        moderator=world.user_id("moderator"), owner=world.user_id("owner"),
        group_member=world.user_id("group_member"))
    body: Any = BODIES.get(method)
    if route == "POST /organizations":
        body = {"request_id": world.owner_request}
    elif template.endswith("/groups") and method == "POST":
        body = {"name": f"g-{uuid.uuid4().hex[:8]}"}
    before = await snapshot(world)
    response = await world.http.request(method, path, json=body, headers=world.headers(role))
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        if method != "GET":
            assert await snapshot(world) == before


async def test_request_lists_admins_see_all_others_their_own(world: World) -> None:
    async def ids(role: str) -> set[str]:
        response = await world.http.get("/api/v1/organization-requests",
                                        headers=world.headers(role))
        assert response.status_code == 200
        return {item["id"] for item in response.json()["items"]}

    assert {world.owner_request, world.pending_request} <= await ids("admin")
    assert await ids("owner") == {world.owner_request}
    assert await ids("outsider") == {world.pending_request}
    assert await ids("group_member") == set()


async def test_organization_list_and_membership_questions(world: World) -> None:
    listed = (await world.http.get("/api/v1/organizations", headers=world.headers("moderator")))
    assert [(o["id"], o["role"]) for o in listed.json()["items"]] == [(world.org, "moderator")]
    outsider = await world.http.get("/api/v1/organizations", headers=world.headers("outsider"))
    assert outsider.json() == {"items": [], "next_cursor": None}
    svc, ctx = world.service, RequestContext()
    assert await svc.organization_role(ctx, world.user_id("owner"), world.org) == "owner"
    assert await svc.organization_role(ctx, world.user_id("moderator"), world.org) == "moderator"
    assert await svc.organization_role(ctx, world.user_id("outsider"), world.org) is None
    assert await svc.organization_role(ctx, "garbage", world.org) is None
    assert await svc.is_group_member(ctx, world.user_id("group_member"), world.group)
    assert not await svc.is_group_member(ctx, world.user_id("outsider"), world.group)
    assert await svc.group_organization(ctx, world.group) == world.org
    assert await svc.group_organization(ctx, str(uuid.uuid4())) is None


async def test_invites_are_single_use(world: World) -> None:
    invite = (await world.http.post(f"/api/v1/groups/{world.group}/invite",
                                    headers=world.headers("owner"))).json()
    first = await world.http.post(f"/api/v1/invites/{invite['token']}/accept",
                                  headers=world.headers("outsider"))
    retry = await world.http.post(f"/api/v1/invites/{invite['token']}/accept",
                                  headers=world.headers("outsider"))
    other = await world.http.post(f"/api/v1/invites/{invite['token']}/accept",
                                  headers=world.headers("admin"))
    unknown = await world.http.post("/api/v1/invites/notarealtoken123/accept",
                                    headers=world.headers("admin"))
    assert (first.status_code, retry.status_code, other.status_code, unknown.status_code) == \
        (200, 200, 409, 404)
    assert first.json() == retry.json() == {"organization_id": world.org,
                                            "group_id": world.group, "role": None}
    members = await world.http.get(f"/api/v1/groups/{world.group}/members",
                                   headers=world.headers("owner"))
    assert world.user_id("outsider") in {m["user_id"] for m in members.json()["items"]}
    assert world.user_id("admin") not in {m["user_id"] for m in members.json()["items"]}


async def test_owner_manages_roles_and_keeps_one_owner(world: World) -> None:
    http, owner, org = world.http, world.headers("owner"), world.org
    joiner = await signup(http)
    invite = (await http.post(f"/api/v1/organizations/{org}/invite", headers=owner)).json()
    await accept(http, invite, joiner)
    promoted = await http.patch(f"/api/v1/organizations/{org}/members/{joiner['user']['id']}",
                                headers=owner, json={"role": "owner"})
    assert promoted.json()["role"] == "owner"
    bad_role = await http.patch(f"/api/v1/organizations/{org}/members/{joiner['user']['id']}",
                                headers=owner, json={"role": "admin"})
    assert bad_role.status_code == 422
    removed = await http.delete(f"/api/v1/organizations/{org}/members/{joiner['user']['id']}",
                                headers=owner)
    assert removed.status_code == 204
    assert await world.service.organization_role(
        RequestContext(), joiner["user"]["id"], org) is None


# --- the attack list: each refused, nothing changed ---

def forged(settings: Settings, key: str = "", algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience, "sub": str(uuid.uuid4()),
            "iat": now, "nbf": now, "exp": now + 300, "typ": "access", "roles": ["admin"],
            **claims}
    return jwt.encode(body, key or reveal(settings.jwt_secret), algorithm=algorithm)


def attack_tokens(settings: Settings, user_id: str) -> dict[str, str]:
    now = int(time.time())
    return {
        "alg-none": jwt.encode({"iss": settings.jwt_issuer, "aud": settings.jwt_audience,
                                "sub": user_id, "iat": now, "exp": now + 300, "typ": "access"},
                               key=None, algorithm="none"),
        "other-secret": forged(settings, key="not-the-secret-" + "y" * 32, sub=user_id),
        "expired": forged(settings, sub=user_id, iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "not-yet-valid": forged(settings, sub=user_id, nbf=now + 3600, exp=now + 7200),
        "wrong-aud": forged(settings, sub=user_id, aud="someone-else"),
        "wrong-iss": forged(settings, sub=user_id, iss="evil"),
        "no-typ": jwt.encode({"iss": settings.jwt_issuer, "aud": settings.jwt_audience,
                              "sub": user_id, "iat": now, "exp": now + 300},
                             reveal(settings.jwt_secret), algorithm="HS256"),
        "refresh-as-access": tokens.issue_refresh_token(settings, user_id, str(uuid.uuid4())),
    }


@pytest.mark.parametrize("attack", ["alg-none", "other-secret", "expired", "not-yet-valid",
                                    "wrong-aud", "wrong-iss", "no-typ", "refresh-as-access"])
async def test_forged_access_tokens_are_refused(world: World, attack: str) -> None:
    victim = world.tokens["outsider"]
    token = attack_tokens(world.settings, victim["user"]["id"])[attack]
    before = await snapshot(world)
    for method, path, body in (
            ("GET", "/api/v1/users/me", None),
            ("PATCH", "/api/v1/users/me", {"display_name": "pwned"}),
            ("POST", f"/api/v1/organization-requests/{world.pending_request}/reject", None),
            ("GET", f"/api/v1/organizations/{world.org}/members", None)):
        response = await world.http.request(method, path, json=body,
                                            headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, (attack, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert await snapshot(world) == before
    me = await world.http.get("/api/v1/users/me", headers=bearer(victim))
    assert me.json()["display_name"] == "Member"


async def test_hs256_token_signed_with_the_rs256_public_key_is_refused(
        world: World) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    rs = world.settings.model_copy(update={"jwt_algorithm": "RS256", "jwt_secret": None,
                                           "jwt_private_key": SecretStr(private),
                                           "jwt_public_key": public})
    user_id = world.user_id("outsider")
    now = int(time.time())
    claims = {"iss": rs.jwt_issuer, "aud": rs.jwt_audience, "sub": user_id, "iat": now,
              "exp": now + 300, "typ": "access", "roles": ["admin"]}
    # PyJWT itself refuses a PEM key as an HMAC secret; sign by hand as an attacker would.
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + \
        b64(json.dumps(claims).encode())
    signature = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    confused = signing_input + "." + b64(signature)
    async with gateway(rs, world.service) as http:
        genuine = tokens.issue_access_token(rs, user_id)
        assert (await http.get("/api/v1/users/me", headers={
            "Authorization": f"Bearer {genuine}"})).status_code == 200
        refused = await http.get("/api/v1/organization-requests?status=pending", headers={
            "Authorization": f"Bearer {confused}"})
        assert refused.status_code == 401


async def test_refresh_reuse_over_http_revokes_the_family(world: World) -> None:
    pair = await signup(world.http)
    rotated = await world.http.post("/api/v1/auth/refresh",
                                    json={"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200
    reused = await world.http.post("/api/v1/auth/refresh",
                                   json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401 and reused.json()["type"].endswith("/token-reused")
    after = await world.http.post("/api/v1/auth/refresh",
                                  json={"refresh_token": rotated.json()["refresh_token"]})
    assert after.status_code == 401


async def test_parallel_refreshes_over_http_at_most_one_wins(world: World) -> None:
    pair = await signup(world.http)
    responses = await asyncio.gather(*(world.http.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        for _ in range(3)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) <= 1 and set(codes) <= {200, 401}


async def test_logout_over_http(world: World) -> None:
    pair = await signup(world.http)
    out = await world.http.post("/api/v1/auth/logout",
                                json={"refresh_token": pair["refresh_token"]})
    assert out.status_code == 204
    again = await world.http.post("/api/v1/auth/refresh",
                                  json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 401


async def test_tampered_or_stale_telegram_login_over_http(world: World) -> None:
    tg = 8_000_000_000 + int(uuid.uuid4().int % 1_000_000)
    good = widget(tg)
    for payload in ({**good, "username": "admin"}, {**good, "hash": "f" * 64},
                    widget(tg, auth_date=int(time.time()) - 2 * 86400),
                    widget(tg, auth_date=int(time.time()) + 3600)):
        response = await world.http.post("/api/v1/auth/telegram", json=payload)
        assert response.status_code == 401, response.text
    async with world.service.sessions() as session:
        assert await session.scalar(select(users.c.id).where(users.c.telegram_id == tg)) is None
    accepted = await world.http.post("/api/v1/auth/telegram", json=good)
    assert accepted.status_code == 200 and accepted.json()["user"]["telegram"]["id"] == tg


@pytest.mark.parametrize("extra", [
    {"roles": ["admin"]}, {"email": "takeover@example.org"}, {"id": str(uuid.uuid4())},
    {"telegram_id": 1}, {"password_hash": "x"}, {"created_at": "2020-01-01T00:00:00Z"}])
async def test_mass_assignment_on_users_me_is_refused(world: World, extra: dict[str, Any]
                                                      ) -> None:
    victim = world.tokens["group_member"]
    before = (await world.http.get("/api/v1/users/me", headers=bearer(victim))).json()
    response = await world.http.patch("/api/v1/users/me", headers=bearer(victim),
                                      json={"display_name": "Changed", **extra})
    assert response.status_code == 422
    after = (await world.http.get("/api/v1/users/me", headers=bearer(victim))).json()
    assert after == before


async def test_patch_users_me_changes_own_fields(world: World) -> None:
    pair = await signup(world.http)
    response = await world.http.patch("/api/v1/users/me", headers=bearer(pair),
                                      json={"display_name": "  New Name ", "locale": "ru"})
    assert response.status_code == 200
    assert (response.json()["display_name"], response.json()["locale"]) == ("New Name", "ru")
    assert response.json()["email"] == pair["user"]["email"]


async def test_register_with_extra_fields_is_refused(world: World) -> None:
    address = email()
    response = await world.http.post("/api/v1/auth/register", json={
        "email": address, "password": PASSWORD, "display_name": "X", "roles": ["admin"]})
    assert response.status_code == 422
    login = await world.http.post("/api/v1/auth/login",
                                  json={"email": address, "password": PASSWORD})
    assert login.status_code == 401


async def test_a_stale_token_does_not_block_logging_in(world: World) -> None:
    stale = attack_tokens(world.settings, world.user_id("owner"))["expired"]
    address = world.tokens["owner"]["user"]["email"]
    response = await world.http.post("/api/v1/auth/login", headers={
        "Authorization": f"Bearer {stale}"}, json={"email": address, "password": PASSWORD})
    assert response.status_code == 200
    protected = await world.http.get("/api/v1/users/me",
                                     headers={"Authorization": f"Bearer {stale}"})
    assert protected.status_code == 401 and protected.json()["type"].endswith("/token-expired")


async def test_creating_a_group_twice_returns_the_same_group(world: World) -> None:
    name = f"Retry {uuid.uuid4().hex[:6]}"
    first = await world.http.post(f"/api/v1/organizations/{world.org}/groups",
                                  headers=world.headers("owner"), json={"name": name})
    again = await world.http.post(f"/api/v1/organizations/{world.org}/groups",
                                  headers=world.headers("moderator"),
                                  json={"name": name.upper()})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    outbox = outbox_for("user")
    async with world.service.sessions() as session:
        published = await session.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.type == "group.created", outbox.c.aggregate_id == first.json()["id"]))
    assert published == 1


async def test_the_service_checks_rights_without_the_gateway(world: World) -> None:
    svc = world.service
    outsider = RequestContext(identity=Identity(world.user_id("outsider")))
    forged_admin = RequestContext(identity=Identity(world.user_id("moderator"), ("moderator",)))
    nobody = RequestContext()
    before = await snapshot(world)
    with pytest.raises(Forbidden):
        await svc.review_organization_request(forged_admin, world.pending_request, "reject", None)
    with pytest.raises(Forbidden):
        await svc.list_members(outsider, world.org, None, 10)
    with pytest.raises(Forbidden):
        await svc.create_group(outsider, world.org, GroupIn(name="sneaky"))
    with pytest.raises(Forbidden):
        await svc.change_member_role(forged_admin, world.org, world.user_id("owner"), "moderator")
    for call in (svc.me(nobody), svc.list_organizations(nobody, None, 10),
                 svc.invite_to_group(nobody, world.group)):
        with pytest.raises(Unauthorized):
            await call
    assert await snapshot(world) == before


async def test_throttled_login_over_http_is_a_429_with_retry_after(
        migrated_settings: Settings, redis_url: str) -> None:
    settings = user_settings(migrated_settings, redis_url, login_failures_per_account=2)
    service = UserService(settings.to_runtime())
    try:
        async with gateway(settings, service) as http:
            pair = await signup(http)
            address = pair["user"]["email"]
            wrong = [(await http.post("/api/v1/auth/login", json={
                "email": address, "password": "wrong-password"})).status_code for _ in range(2)]
            throttled = await http.post("/api/v1/auth/login",
                                        json={"email": address, "password": PASSWORD})
    finally:
        await service.close()
    assert wrong == [401, 401]
    assert throttled.status_code == 429
    assert throttled.json()["type"].endswith("/login-throttled")
    assert throttled.headers["cache-control"] == "no-store"
    assert 1 <= int(throttled.headers["retry-after"]) <= 900


async def test_lists_page_with_a_cursor(world: World) -> None:
    path = f"/api/v1/organizations/{world.org}/members"
    everyone = (await world.http.get(path, headers=world.headers("owner"))).json()
    assert everyone["next_cursor"] is None and len(everyone["items"]) >= 2
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await world.http.get(path, headers=world.headers("owner"), params=params)).json()
        seen += [m["user_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [m["user_id"] for m in everyone["items"]]
    garbage = await world.http.get(path, headers=world.headers("owner"),
                                   params={"cursor": "!!!"})
    assert garbage.status_code == 422
    assert garbage.json()["type"].endswith("/invalid-cursor")


async def test_the_bot_accepts_an_invite_for_the_linked_telegram_user(world: World) -> None:
    tg = 9_000_000_000 + int(uuid.uuid4().int % 1_000_000)
    joined = (await world.http.post("/api/v1/auth/telegram", json=widget(tg))).json()
    invite = (await world.http.post(f"/api/v1/groups/{world.group}/invite",
                                    headers=world.headers("moderator"))).json()
    with pytest.raises(NotFound):
        await world.service.accept_invite_from_telegram(RequestContext(), tg + 1,
                                                        invite["token"])
    accepted = await world.service.accept_invite_from_telegram(RequestContext(), tg,
                                                               invite["token"])
    assert accepted.group_id == world.group
    assert await world.service.is_group_member(RequestContext(), joined["user"]["id"],
                                               world.group)


async def test_the_organization_flow_published_its_events(world: World) -> None:
    outbox = outbox_for("user")

    async def published(event_type: str, aggregate_id: str) -> list[dict[str, Any]]:
        async with world.service.sessions() as session:
            rows = (await session.execute(select(outbox.c.envelope).where(
                outbox.c.type == event_type, outbox.c.aggregate_id == aggregate_id))).all()
        return [row.envelope["data"] for row in rows]

    assert [d["requester_id"] for d in await published(
        "organization.request.created", world.owner_request)] == [world.user_id("owner")]
    assert [d["owner_id"] for d in await published("organization.created", world.org)] == \
        [world.user_id("owner")]
    added = {(d["user_id"], d["role"])
             for d in await published("organization.member.added", world.org)}
    assert {(world.user_id("owner"), "owner"), (world.user_id("moderator"), "moderator")} <= added
    assert len(await published("group.created", world.group)) == 1
    joined = [d["user_id"] for d in await published("group.member.added", world.group)]
    assert world.user_id("group_member") in joined
    assert all(d["organization_id"] == world.org
               for d in await published("group.member.added", world.group))
