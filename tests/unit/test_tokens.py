import time

import jwt
import pytest

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
