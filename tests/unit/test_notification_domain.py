"""Pure rules of the notification service: limiter arithmetic, statuses, errors, preferences,
templates."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from serve.common.errors import Unprocessable
from serve.notifications import domain, templates
from serve.notifications.domain import LimiterState, Limits, Preferences


def test_the_overall_limit_is_paced_within_every_wall_clock_second() -> None:
    state = LimiterState(Limits(per_second=5, guard_ms=100))
    slots = []
    for i in range(15):
        wait, reason = state.acquire(0, 1000 + i)
        assert reason == ""
        slots.append(wait)
    per_second: dict[int, int] = {}
    for t in slots:
        per_second[t // 1000] = per_second.get(t // 1000, 0) + 1
    assert per_second == {0: 5, 1: 5, 2: 5}
    assert all(t % 1000 <= 900 - 180 for t in slots)  # spread over the first 900 ms
    assert all(b - a >= 180 for a, b in itertools.pairwise(slots))


def test_one_message_a_second_per_chat_and_twenty_a_minute_per_group() -> None:
    state = LimiterState(Limits(per_second=100, guard_ms=0))
    assert state.acquire(0, 7) == (0, "")
    assert state.acquire(500, 7) == (500, "chat")
    assert state.acquire(1000, 7) == (0, "")
    state = LimiterState(Limits(per_second=100, guard_ms=0))
    group = -100
    sends = [t for t in range(0, 60_000, 1000) if state.acquire(t + 100, group) == (0, "")]
    assert len(sends) == 20
    wait, reason = state.acquire(59_100, group)
    assert reason == "group" and wait == 100 + 60_000 - 59_100


def test_a_429_pauses_everything_until_retry_after() -> None:
    state = LimiterState(Limits(guard_ms=10))
    state.pause(1000, 3)
    assert state.paused(2000)
    assert state.acquire(2000, 1) == (2010, "pause")
    assert state.acquire(4010, 1) == (0, "")


def test_statuses_leave_queued_only_once() -> None:
    assert domain.transition("queued", "sent") == "sent"
    for final in domain.FINAL:
        with pytest.raises(ValueError):
            domain.transition(final, "queued")
    with pytest.raises(ValueError):
        domain.transition("queued", "delivered")


@pytest.mark.parametrize(("code", "text", "verdict"), [
    (429, "Too Many Requests: retry after 5", "retry_after"),
    (403, "Forbidden: bot was blocked by the user", "blocked"),
    (403, "Forbidden: user is deactivated", "blocked"),
    (400, "Bad Request: chat not found", "blocked"),
    (400, "Bad Request: message is not modified: specified new message content", "sent"),
    (400, "Bad Request: message to edit not found", "resend"),
    (400, "Bad Request: can't parse entities", "failed"),
    (502, "Bad Gateway", "retry"),
])
def test_bot_api_errors_are_classified(code: int, text: str, verdict: str) -> None:
    assert domain.classify(code, text) == verdict


def test_quiet_hours_defer_but_never_tickets_receipts_or_cancellations() -> None:
    prefs = Preferences(quiet_start="22:00", quiet_end="08:00", time_zone="Europe/Moscow")
    night = datetime(2030, 1, 1, 20, 30, tzinfo=UTC)  # 23:30 in Moscow
    verdict, until = domain.decide(prefs, "reminder", night)
    assert verdict == "defer" and until is not None
    assert until.astimezone(UTC) == datetime(2030, 1, 2, 5, 0, tzinfo=UTC)
    for essential in ("ticket", "receipt", "cancellation"):
        assert domain.decide(prefs, essential, night) == ("send", None)
    assert domain.decide(prefs, "reminder", datetime(2030, 1, 1, 12, tzinfo=UTC)) == (
        "send", None)
    off = Preferences(telegram=False, opt_out=("reminder",))
    assert domain.decide(off, "welcome", night)[0] == "suppress"
    assert domain.decide(off, "ticket", night)[0] == "send"


def test_preferences_are_validated() -> None:
    for bad in (Preferences(opt_out=("spam",)), Preferences(quiet_start="22:00"),
                Preferences(quiet_start="25:00", quiet_end="08:00"),
                Preferences(time_zone="Mars/Olympus")):
        with pytest.raises(Unprocessable):
            bad.validate()


def test_templates_escape_values_and_refuse_the_sandbox_escape() -> None:
    text = templates.render(templates.DEFAULTS["welcome"]["en"], {"name": "<i>{{ 1 }}</i>"})
    assert "&lt;i&gt;{{ 1 }}&lt;/i&gt;" in text and text.startswith("Hi, <b>")
    with pytest.raises(Unprocessable):
        templates.render("{{ ().__class__.__base__.__subclasses__() }}", {})
    assert templates.money(150050, "RUB") == "1 500.50 RUB"
    assert domain.locale_of("ru-RU") == "ru" and domain.locale_of("de") == "en"


def test_a_template_compiled_once_renders_each_context_and_a_broken_one_always_fails() -> None:
    body = templates.DEFAULTS["welcome"]["en"]
    first = templates.render(body, {"name": "Anna"})
    second = templates.render(body, {"name": "Boris"})
    assert "Anna" in first and "Boris" in second and "Anna" not in second
    for _ in range(2):  # a text that does not compile is refused every time, never kept
        with pytest.raises(Unprocessable):
            templates.render("{% if %}", {})


def test_link_tokens_fit_a_deep_link_and_are_verified() -> None:
    import re
    import uuid

    user = str(uuid.uuid4())
    token = domain.link_token("s3cret", user, 2_000_000_000)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", token)
    assert domain.verify_link_token("s3cret", token, 1_999_999_999) == user
    assert domain.verify_link_token("s3cret", token, 2_000_000_001) is None  # expired
    assert domain.verify_link_token("other", token, 0) is None
    assert domain.verify_link_token("s3cret", token[:-1] + "A", 0) in (None,) or \
        token.endswith("A")
