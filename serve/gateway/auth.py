"""Which routes are public, and the dependency that requires an access token everywhere else.

``enforce_authentication`` is attached by ``create_app`` to every router it mounts, so a new
route is protected unless its method and path template are listed here. Public: the auth
endpoints, the event list and detail, provider webhooks, analytics tracking (plus the
operations routes and docs, which live outside the routers).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Request

from cluster.settings import Settings
from serve.common.context import RequestContext
from serve.common.errors import Unauthorized
from serve.gateway.deps import optional_identity
from serve.users.tokens import identity_from_access_token

PUBLIC_ROUTES: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = (
    (frozenset({"POST"}), re.compile(r"^/api/v1/auth/[^/]+$")),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/api/v1/events$")),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/api/v1/events/\{[^/}]+\}$")),
    (frozenset({"POST"}), re.compile(r"^/api/v1/webhooks/.+$")),
    (frozenset({"POST"}), re.compile(r"^/api/v1/analytics/track$")),
)


def is_public(method: str, template: str) -> bool:
    return any(method in methods and pattern.match(template)
               for methods, pattern in PUBLIC_ROUTES)


def enforce_authentication(
    request: Request, ctx: Annotated[RequestContext, Depends(optional_identity)],
) -> None:
    """401 unless the route is public or a valid access token was sent."""
    if ctx.identity is not None:
        return
    template = getattr(request.scope.get("route"), "path", request.url.path)
    if not is_public(request.method, template):
        raise Unauthorized("send an access token: Authorization: Bearer <token>")


def bearer_subject(settings: Settings, authorization: str | None) -> str | None:
    """The user id of a valid ``Bearer`` access token, else None (never raises)."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    try:
        return identity_from_access_token(settings, authorization[7:].strip()).user_id
    except (Unauthorized, LookupError):
        return None
