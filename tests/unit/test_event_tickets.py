"""Ticket codes are verifiable without the database and cannot be forged or moved."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from serve.common.errors import Unprocessable
from serve.events.tickets import qr_png, ticket_code, verify_ticket_code
from tests.conftest import make_settings

SETTINGS = make_settings(jwt_secret="t" * 40, ticket_signing_key="k" * 40)


def test_a_code_names_its_registration_and_event() -> None:
    code = ticket_code(SETTINGS, "reg1", "ev1")
    assert verify_ticket_code(SETTINGS, code) == ("reg1", "ev1")
    assert code == ticket_code(SETTINGS, "reg1", "ev1")  # stable: the same QR every time


@pytest.mark.parametrize("mangle", [
    lambda c: c.replace("reg1", "reg2"),
    lambda c: c.replace("ev1", "ev2"),
    lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),
    lambda c: c + ".x",
    lambda c: "garbage",
])
def test_forged_or_altered_codes_are_rejected(mangle: object) -> None:
    code = ticket_code(SETTINGS, "reg1", "ev1")
    with pytest.raises(Unprocessable):
        verify_ticket_code(SETTINGS, mangle(code))  # type: ignore[operator]


def test_another_secret_does_not_verify() -> None:
    code = ticket_code(make_settings(ticket_signing_key="o" * 40), "reg1", "ev1")
    with pytest.raises(Unprocessable):
        verify_ticket_code(SETTINGS, code)


def test_the_qr_is_a_png() -> None:
    assert qr_png(ticket_code(SETTINGS, "reg1", "ev1")).startswith(b"\x89PNG\r\n")


def test_rotating_the_jwt_key_keeps_issued_tickets_valid() -> None:
    code = ticket_code(SETTINGS, "reg1", "ev1")
    rotated = SETTINGS.model_copy(update={"jwt_secret": SecretStr("n" * 40)})
    assert verify_ticket_code(rotated, code) == ("reg1", "ev1")


def test_codes_need_their_own_key() -> None:
    with pytest.raises(LookupError, match="AFISHA_TICKET_SIGNING_KEY"):
        ticket_code(make_settings(jwt_secret="t" * 40), "reg1", "ev1")
