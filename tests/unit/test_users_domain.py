"""Pure rules of the user service: roles, lifecycles, Telegram signatures, refresh tokens."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from serve.common import paging
from serve.common.errors import Conflict, Forbidden, Unauthorized
from serve.users import domain, telegram, tokens
from tests.conftest import make_settings

BOT_TOKEN = "123456:TEST-bot-token"
SETTINGS = make_settings(jwt_secret="k" * 48)


def widget(**overrides: object) -> dict[str, object]:
    fields: dict[str, object] = {"id": 42, "first_name": "Ann", "username": "ann",
                                 "auth_date": int(time.time()) - 10, **overrides}
    return {**fields, "hash": telegram.sign(fields, BOT_TOKEN)}


def test_admin_role_comes_from_the_configured_emails_only() -> None:
    assert domain.platform_roles("Boss@Example.org", ["boss@example.org"]) == ("admin",)
    assert domain.platform_roles("someone@example.org", ["boss@example.org"]) == ()
    assert domain.platform_roles(None, ["boss@example.org"]) == ()


def test_request_lifecycle_allows_one_decision_and_idempotent_repeats() -> None:
    assert domain.review_request("pending", "approve") == "approved"
    assert domain.review_request("pending", "reject") == "rejected"
    assert domain.review_request("approved", "approve") == "approved"
    for status, action in (("approved", "reject"), ("rejected", "approve")):
        with pytest.raises(Conflict):
            domain.review_request(status, action)


def test_members_are_managed_by_owners_and_groups_by_staff() -> None:
    domain.require_owner("owner")
    for role in ("moderator", None):
        with pytest.raises(Forbidden):
            domain.require_owner(role)
    domain.require_staff("moderator")
    with pytest.raises(Forbidden):
        domain.require_staff(None)
    assert domain.can_read_organization(None, is_admin=True)
    assert not domain.can_read_organization(None, is_admin=False)
    with pytest.raises(Forbidden):
        domain.require_admin(("moderator",))


def test_the_last_owner_cannot_be_demoted_or_removed() -> None:
    with pytest.raises(Conflict, match="at least one Owner"):
        domain.check_owner_remains(1, "owner", "moderator")
    with pytest.raises(Conflict):
        domain.check_owner_remains(1, "owner", None)
    domain.check_owner_remains(2, "owner", None)
    domain.check_owner_remains(1, "moderator", None)


def test_invites_are_single_use_and_expire() -> None:
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)
    assert domain.check_invite(later, None, "u1", now) is True
    assert domain.check_invite(later, "u1", "u1", now) is False
    with pytest.raises(Conflict, match="already been used"):
        domain.check_invite(later, "u2", "u1", now)
    with pytest.raises(Conflict, match="expired"):
        domain.check_invite(now - timedelta(seconds=1), None, "u1", now)


def test_telegram_data_check_string_is_sorted_lines_without_hash() -> None:
    fields = {"id": 1, "auth_date": 5, "first_name": "A", "hash": "x", "username": None}
    assert telegram.data_check_string(fields) == "auth_date=5\nfirst_name=A\nid=1"


def test_telegram_payload_signed_with_the_bot_token_is_accepted() -> None:
    telegram.verify(widget(), BOT_TOKEN, time.time(), max_age=3600)


@pytest.mark.parametrize("tamper", [
    lambda f: {**f, "id": 43},
    lambda f: {**f, "username": "mallory"},
    lambda f: {**f, "hash": "0" * 64},
    lambda f: {k: v for k, v in f.items() if k != "username"},
])
def test_tampered_telegram_payload_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthorized, match="not authentic"):
        telegram.verify(tamper(widget()), BOT_TOKEN, time.time(), max_age=3600)


def test_payload_signed_with_another_bot_is_refused() -> None:
    with pytest.raises(Unauthorized, match="not authentic"):
        telegram.verify(widget(), "999:other-bot", time.time(), max_age=3600)


def test_stale_and_future_telegram_payloads_are_refused() -> None:
    now = time.time()
    with pytest.raises(Unauthorized, match="too old"):
        telegram.verify(widget(auth_date=int(now) - 3601), BOT_TOKEN, now, max_age=3600)
    with pytest.raises(Unauthorized, match="future"):
        telegram.verify(widget(auth_date=int(now) + 600), BOT_TOKEN, now, max_age=3600)
    with pytest.raises(Unauthorized, match="not configured"):
        telegram.verify(widget(), None, now, max_age=3600)


def test_refresh_and_access_tokens_are_not_interchangeable() -> None:
    refresh = tokens.issue_refresh_token(SETTINGS, "u1", "family-1")
    assert tokens.refresh_claims(SETTINGS, refresh)["fam"] == "family-1"
    with pytest.raises(Unauthorized):
        tokens.identity_from_access_token(SETTINGS, refresh)
    access = tokens.issue_access_token(SETTINGS, "u1")
    with pytest.raises(Unauthorized):
        tokens.refresh_claims(SETTINGS, access)
    assert tokens.digest(refresh) != tokens.digest(access)
    assert len(tokens.digest(refresh)) == 32


def test_cursor_round_trip_and_garbage_cursor() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    assert paging.decode(paging.encode(moment, "abc")) == (moment, "abc")
    with pytest.raises(Exception, match="cursor"):
        paging.decode("%%%not-base64")
