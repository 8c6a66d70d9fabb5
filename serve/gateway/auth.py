"""Which routes are public, who the client is (user id or IP) for rate limiting.

``serve.gateway.deps.enforce_authentication`` is attached by ``create_app`` to every router it
mounts, so a new route is protected unless its method and path template are listed here.
Public: the auth endpoints, the event list, detail and ticket types (prices and seats left; the
event service applies the event's visibility), payments' Pay links, provider webhooks,
analytics tracking, media metadata and URLs (the media service applies its access rules),
signed ``/media-files`` links (plus the operations routes and docs, which live outside the
routers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cluster.settings import Settings
from serve.common.errors import Unauthorized
from serve.users.tokens import identity_from_access_token

PUBLIC_ROUTES: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = (
    (frozenset({"POST"}), re.compile(r"^/api/v1/auth/[^/]+$")),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/api/v1/events$")),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/api/v1/events/\{[^/}]+\}$")),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/api/v1/events/\{[^/}]+\}/ticket-types$")),
    (frozenset({"POST"}), re.compile(r"^/api/v1/webhooks/.+$")),
    # A payment's Pay link, opened from a Telegram button: its unguessable id is the
    # credential, as the provider's own confirmation URL is. GET only: opening it issues the
    # payment at the provider.
    (frozenset({"GET"}), re.compile(r"^/api/v1/payments/\{[^/}]+\}/pay$")),
    (frozenset({"POST"}), re.compile(r"^/api/v1/telegram/webhook$")),
    (frozenset({"POST"}), re.compile(r"^/api/v1/analytics/track$")),
    # Signed, expiring links (the signature is the credential).
    (frozenset({"GET", "HEAD"}), re.compile(r"^/api/v1/analytics/pages/dashboard$")),
    (frozenset({"GET", "HEAD"}),
     re.compile(r"^/api/v1/analytics/exports/\{[^/}]+\}/download$")),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/api/v1/media/\{[^/}]+\}(/url)?$")),
    (frozenset({"GET", "HEAD"}), re.compile(r"^/media-files/.+$")),
)


def is_public(method: str, template: str) -> bool:
    return any(method in methods and pattern.match(template)
               for methods, pattern in PUBLIC_ROUTES)


def bearer_subject(settings: Settings, authorization: str | None) -> str | None:
    """The user id of a valid ``Bearer`` access token, else None (never raises)."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    try:
        return identity_from_access_token(settings, authorization[7:].strip()).user_id
    except (Unauthorized, LookupError):
        return None


def client_ip(scope: Mapping[str, Any], forwarded_for_hops: int = 0) -> str | None:
    """The client's address: the socket peer, or with ``forwarded_for_hops`` = N trusted
    proxies in front, the N-th address from the right of ``X-Forwarded-For``."""
    if forwarded_for_hops > 0:
        for name, value in scope.get("headers") or ():
            if name == b"x-forwarded-for":
                hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
                if hops:
                    return hops[-min(forwarded_for_hops, len(hops))]
    client = scope.get("client")
    return str(client[0]) if client else None
