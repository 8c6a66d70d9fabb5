import time

import jwt
import pytest

from serve.common.bounded import BoundedDict
from serve.common.errors import Unauthorized
from serve.users import tokens
from tests.conftest import make_settings

SETTINGS = make_settings(jwt_secret="s" * 48)


def test_access_token_round_trip() -> None:
    token = tokens.issue_access_token(SETTINGS, "user-1", ("admin",))
    identity = tokens.identity_from_access_token(SETTINGS, token)
    assert identity.user_id == "user-1"
    assert identity.is_admin


def test_expired_and_wrong_type_tokens_are_refused() -> None:
    old = tokens.issue_access_token(SETTINGS, "u", now=time.time() - 3600)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.identity_from_access_token(SETTINGS, old)
    refresh = tokens.issue(SETTINGS, "u", "refresh", 3600)
    with pytest.raises(Unauthorized, match="refresh token is not an access token"):
        tokens.identity_from_access_token(SETTINGS, refresh)


def test_unsigned_and_foreign_tokens_are_refused() -> None:
    claims = {"iss": "afisha", "aud": "afisha-api", "sub": "u", "typ": "access",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    foreign = jwt.encode({**claims, "aud": "elsewhere"}, "s" * 48, algorithm="HS256")
    for token in (unsigned, foreign, "garbage"):
        with pytest.raises(Unauthorized):
            tokens.identity_from_access_token(SETTINGS, token)


def test_a_verified_token_is_remembered_until_it_expires_and_only_for_its_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    verified: list[str] = []
    real_decode = tokens.decode

    def counting_decode(settings: object, token: str, token_type: str) -> dict[str, object]:
        verified.append(token)
        return real_decode(settings, token, token_type)  # type: ignore[arg-type]

    monkeypatch.setattr(tokens, "decode", counting_decode)
    token = tokens.issue_access_token(SETTINGS, "cached")
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert tokens.identity_from_access_token(SETTINGS, token).user_id == "cached"
    assert tokens.identity_from_access_token(SETTINGS, token).user_id == "cached"
    assert len(verified) == 1  # the second time it was not verified again
    with pytest.raises(Unauthorized):  # the cache never vouches for a token under another key
        tokens.identity_from_access_token(make_settings(jwt_secret="t" * 48), token)
    assert len(verified) == 2

    class Later:
        @staticmethod
        def time() -> float:
            return float(exp) + 1

    monkeypatch.setattr(tokens, "time", Later)
    tokens.identity_from_access_token(SETTINGS, token)
    assert len(verified) == 3  # past its exp the cached answer is not used


def test_the_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_VERIFIED", BoundedDict(10, clock=tokens._VERIFIED.clock))
    for i in range(25):
        tokens.identity_from_access_token(SETTINGS, tokens.issue_access_token(SETTINGS, f"u{i}"))
    assert len(tokens._VERIFIED) <= 10
