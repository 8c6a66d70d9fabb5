"""Ticket codes: ``<registration>.<event>.<signature>``, verifiable without a database lookup.

The signature is an HMAC-SHA256 keyed by ``AFISHA_TICKET_SIGNING_KEY`` (a key of its own, so
rotating the JWT key leaves issued tickets valid), so only the server can make a valid code, and
a code names exactly one registration of one event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io

from cluster.settings import Settings, reveal
from serve.common.errors import Unprocessable


def _key(settings: Settings) -> bytes:
    secret = reveal(settings.ticket_signing_key)
    if not secret:
        raise LookupError("ticket codes need AFISHA_TICKET_SIGNING_KEY")
    return hashlib.sha256(b"afisha-ticket:" + secret.encode()).digest()


def _signature(settings: Settings, registration_id: str, event_id: str) -> str:
    mac = hmac.new(_key(settings), f"{registration_id}:{event_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode()


def ticket_code(settings: Settings, registration_id: str, event_id: str) -> str:
    return f"{registration_id}.{event_id}.{_signature(settings, registration_id, event_id)}"


def verify_ticket_code(settings: Settings, code: str) -> tuple[str, str]:
    """``(registration_id, event_id)`` of a genuine code, else 422 ``invalid-ticket``."""
    parts = code.split(".")
    if len(parts) == 3:
        registration_id, event_id, signature = parts
        expected = _signature(settings, registration_id, event_id)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return registration_id, event_id
    raise Unprocessable("the ticket code is not valid", slug="invalid-ticket")


def qr_png(text: str, scale: int = 8) -> bytes:
    import segno

    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()
