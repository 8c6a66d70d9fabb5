"""Signatures compared against any text a client sends (non-ASCII, lone surrogates) are refused,
never a crash (Schemathesis found 500s here)."""

from __future__ import annotations

import time

import pytest

from serve.analytics.domain import signature_ok
from serve.common.errors import Unauthorized
from serve.notifications.domain import verify_link_token
from serve.payments import signing
from serve.users import telegram

HOSTILE = ["d\u00c7\u00c8\ud9ae\ude2e", "\u00bf\U0001c139", "\x00\x01", "é" * 64]


@pytest.mark.parametrize("given", HOSTILE)
def test_hostile_signatures_are_refused(given: str) -> None:
    now = time.time()
    with pytest.raises(Unauthorized):
        telegram.verify({"id": 1, "auth_date": int(now), "hash": given}, "123:token", now, 60)
    with pytest.raises(Unauthorized):
        signing.verify("secret", str(int(now)), given, b"{}", now, 300)
    assert signature_ok(b"k" * 32, given, int(now) + 60, now, "/x") is False
    assert verify_link_token("secret", "L" + "a" * 40 + "_" + given, int(now)) is None
