"""Access tokens: JWTs with pinned algorithms and required claims.

``AFISHA_JWT_ALGORITHM``: HS256 with ``AFISHA_JWT_SECRET`` (generated into the data directory
by ``afisha run`` when unset), or RS256/ES256/EdDSA with ``AFISHA_JWT_PRIVATE_KEY`` and
``AFISHA_JWT_PUBLIC_KEY`` (PEM). A token must carry ``iss``, ``aud``, ``exp``, ``iat``,
``sub`` and ``typ``; only ``typ == "access"`` is accepted as an access token.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import jwt

from cluster.settings import Settings, reveal
from serve.common.bounded import BoundedDict
from serve.common.context import Identity
from serve.common.errors import Unauthorized

REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub", "typ"]


def algorithm(settings: Settings) -> str:
    """The one algorithm tokens are signed and verified with (never taken from the token)."""
    if settings.jwt_algorithm == "HS256":
        if not settings.jwt_secret:
            raise LookupError("HS256 needs AFISHA_JWT_SECRET")
    elif not (settings.jwt_private_key and settings.jwt_public_key):
        raise LookupError(f"{settings.jwt_algorithm} needs AFISHA_JWT_PRIVATE_KEY and "
                          "AFISHA_JWT_PUBLIC_KEY (PEM)")
    return settings.jwt_algorithm


def _signing_key(settings: Settings) -> str:
    return str(reveal(settings.jwt_secret if settings.jwt_algorithm == "HS256"
                      else settings.jwt_private_key))


def _verification_key(settings: Settings) -> str:
    if settings.jwt_algorithm == "HS256":
        return str(reveal(settings.jwt_secret))
    return str(settings.jwt_public_key)


def issue(settings: Settings, subject: str, token_type: str, ttl_seconds: int,
          now: float | None = None, **claims: Any) -> str:
    issued = int(now if now is not None else time.time())
    body = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience, "sub": subject,
            "iat": issued, "nbf": issued, "exp": issued + ttl_seconds, "typ": token_type,
            "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(body, _signing_key(settings), algorithm=algorithm(settings))


def issue_access_token(settings: Settings, user_id: str, roles: tuple[str, ...] = (),
                       now: float | None = None) -> str:
    return issue(settings, user_id, "access", settings.access_token_ttl_seconds, now,
                 roles=list(roles))


def decode(settings: Settings, token: str, token_type: str) -> dict[str, Any]:
    """Verified claims, or ``Unauthorized`` (never says which check failed beyond a reason)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, _verification_key(settings), algorithms=[algorithm(settings)],
            audience=settings.jwt_audience, issuer=settings.jwt_issuer,
            options={"require": REQUIRED_CLAIMS}, leeway=5)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the token has expired", slug="token-expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("the token is not valid", slug="invalid-token") from exc
    if claims.get("typ") != token_type:
        raise Unauthorized(f"a {claims.get('typ')} token is not an {token_type} token",
                           slug="invalid-token")
    return claims


# Verified access tokens until their ``exp`` (the gateway checks every request's token, often
# twice: rate limit and route); the least recently used leave past VERIFIED_MAX.
VERIFIED_MAX = 50_000
_VERIFIED: BoundedDict[tuple[str, ...], Identity] = BoundedDict(
    VERIFIED_MAX, clock=lambda: time.time())


def identity_from_access_token(settings: Settings, token: str) -> Identity:
    key = (token, _verification_key(settings), settings.jwt_algorithm, settings.jwt_issuer,
           settings.jwt_audience)
    cached = _VERIFIED.get(key)
    if cached is not None:
        return cached
    claims = decode(settings, token, "access")
    identity = Identity(user_id=str(claims["sub"]), roles=tuple(claims.get("roles") or ()))
    _VERIFIED.set(key, identity, expires_at=float(claims["exp"]))
    return identity


def issue_refresh_token(settings: Settings, user_id: str, family_id: str,
                        now: float | None = None) -> str:
    """A refresh token of a rotation family; the server keeps only its digest."""
    return issue(settings, user_id, "refresh", settings.refresh_token_ttl_seconds, now,
                 fam=family_id)


def refresh_claims(settings: Settings, token: str) -> dict[str, Any]:
    """Verified claims of a refresh token (never accepts an access token)."""
    claims = decode(settings, token, "refresh")
    if not isinstance(claims.get("fam"), str):
        raise Unauthorized("the token is not valid", slug="invalid-token")
    return claims


def digest(token: str) -> bytes:
    """How refresh tokens and invite tokens are stored: SHA-256 of the token."""
    return hashlib.sha256(token.encode()).digest()
