"""Verification of Telegram Login Widget data (https://core.telegram.org/widgets/login).

The data-check-string is every received field except ``hash`` as ``key=value`` lines sorted
by key and joined by ``\\n``; its HMAC-SHA256 with ``SHA256(bot_token)`` as the key must equal
``hash``. ``auth_date`` older than ``max_age`` seconds, or in the future, is refused.
Standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from serve.common.errors import Unauthorized

# How far in the future ``auth_date`` may be (clock skew between Telegram and us).
FUTURE_SKEW_SECONDS = 30


def data_check_string(fields: Mapping[str, Any]) -> str:
    return "\n".join(f"{key}={fields[key]}" for key in sorted(fields)
                     if key != "hash" and fields[key] is not None)


def sign(fields: Mapping[str, Any], bot_token: str) -> str:
    """The ``hash`` Telegram computes for these fields (used by tests and fakes)."""
    secret = hashlib.sha256(bot_token.encode()).digest()
    return hmac.new(secret, data_check_string(fields).encode(), hashlib.sha256).hexdigest()


def verify(fields: Mapping[str, Any], bot_token: str | None, now: float, max_age: int) -> None:
    """Raise ``Unauthorized`` unless the fields are signed by the bot's token and fresh."""
    if not bot_token:
        raise Unauthorized("Telegram login is not configured on this platform",
                           slug="telegram-disabled")
    given = str(fields.get("hash") or "")
    if not hmac.compare_digest(sign(fields, bot_token).encode(),  # any text compares
                               given.lower().encode("utf-8", "surrogatepass")):
        raise Unauthorized("the Telegram login data is not authentic", slug="invalid-telegram")
    auth_date = int(fields.get("auth_date") or 0)
    if auth_date > now + FUTURE_SKEW_SECONDS:
        raise Unauthorized("the Telegram login data is dated in the future",
                           slug="invalid-telegram")
    if now - auth_date > max_age:
        raise Unauthorized("the Telegram login data is too old; log in again",
                           slug="stale-telegram")
