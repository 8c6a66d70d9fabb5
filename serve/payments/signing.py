"""Webhook signatures: HMAC-SHA256 over ``<timestamp>.<raw body>`` with a shared secret.

The sandbox provider signs what it sends; ``verify`` refuses a bad signature or a timestamp
outside the tolerance window (a replayed or delayed delivery).
"""

from __future__ import annotations

import hashlib
import hmac

from serve.common.errors import Unauthorized

TIMESTAMP_HEADER = "X-Afisha-Timestamp"
SIGNATURE_HEADER = "X-Afisha-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes,
           now: float, tolerance_s: int) -> None:
    if not timestamp or not signature:
        raise Unauthorized("the webhook is not signed", slug="invalid-signature")
    try:
        sent_at = int(timestamp)
    except ValueError as exc:
        raise Unauthorized("the webhook timestamp is not a number",
                           slug="invalid-signature") from exc
    if abs(now - sent_at) > tolerance_s:
        raise Unauthorized("the webhook timestamp is outside the accepted window",
                           slug="stale-webhook")
    given = signature.encode("utf-8", "surrogatepass")  # any header text compares, none raises
    if not hmac.compare_digest(sign(secret, sent_at, body).encode(), given):
        raise Unauthorized("the webhook signature does not match", slug="invalid-signature")
