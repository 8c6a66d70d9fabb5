"""The pure rules of analytics: contributions and their deltas, visitor hashing, robots,
tracked items, dashboard arithmetic, CSV neutralisation and link signatures."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from serve.analytics import domain
from serve.common.errors import Unprocessable

T0 = datetime(2026, 3, 1, 10, 20, tzinfo=UTC)
H = timedelta(hours=1)


def messages() -> list[tuple[str, datetime, dict[str, object]]]:
    base = {"registration_id": "r1", "event_id": "e1"}
    return [
        ("registration.created", T0, {**base, "organization_id": "o", "ticket_type_id": "t",
                                      "quantity": 2, "status": "pending_payment"}),
        ("payment.completed", T0 + H, {**base, "payment_id": "p1", "amount": 2000,
                                       "currency": "RUB"}),
        ("payment.refunded", T0 + 5 * H, {**base, "refund_id": "f1", "refunded_amount": 500,
                                          "currency": "RUB"}),
        ("checkin.completed", T0 + 30 * H, {**base, "checked_in_at": (T0 + 30 * H).isoformat()}),
    ]


def folded(order: list[tuple[str, datetime, dict[str, object]]]) -> domain.Facts:
    facts = domain.Facts("r1")
    for kind, at, data in order:
        domain.merge(facts, kind, at, data)
    return facts


def test_any_order_of_a_registrations_events_gives_the_same_facts() -> None:
    reference = folded(messages())
    for order in itertools.permutations(messages()):
        assert folded(list(order)) == reference


def test_a_duplicate_changes_no_fact_and_so_adds_nothing() -> None:
    facts = folded(messages())
    again = facts.copy()
    for kind, at, data in messages():
        domain.merge(again, kind, at, data)
    assert again == facts
    delta = domain.change(facts, again)
    assert not delta.counters and not delta.money


def test_contribution_counts_seats_at_their_hours_and_money_per_currency() -> None:
    c = domain.contribution(folded(messages()))
    hour = domain.hour_of(T0)
    assert c.counters[("e1", "t", hour)]["reservations"] == 2
    assert c.counters[("e1", "t", hour + H)]["confirmations"] == 2
    assert c.counters[("e1", "t", domain.hour_of(T0 + 30 * H))]["checkins"] == 2
    assert c.money[("e1", "t", hour + H, "RUB")]["gross"] == 2000
    assert c.money[("e1", "t", domain.hour_of(T0 + 5 * H), "RUB")]["refunded"] == 500


def test_nothing_counts_before_the_registration_is_known_then_everything_does() -> None:
    early = domain.Facts("r1")
    for kind, at, data in messages()[1:]:
        domain.merge(early, kind, at, data)
    assert not domain.contribution(early).counters
    later = early.copy()
    domain.merge(later, *messages()[0])
    delta = domain.change(early, later)
    assert delta.counters == domain.contribution(folded(messages())).nonzero().counters


def test_a_rescan_counts_once_and_the_earliest_time_wins() -> None:
    facts = folded(messages())
    domain.merge(facts, "checkin.completed", T0 + 31 * H,
                 {"registration_id": "r1", "checked_in_at": (T0 + 31 * H).isoformat()})
    assert facts.checked_in_at == T0 + 30 * H


def test_a_cancelled_confirmed_registration_counts_as_confirmed_cancellation() -> None:
    facts = folded(messages())
    domain.merge(facts, "registration.cancelled", T0 + 6 * H, {"registration_id": "r1"})
    rows = [domain.Row(tt, h, v) for (_, tt, h), v in domain.contribution(facts).counters.items()]
    money = [domain.MoneyRow(tt, h, cur, v.get("gross", 0), v.get("refunded", 0))
             for (_, tt, h, cur), v in domain.contribution(facts).money.items()]
    figures = domain.figures(rows, money, "day", 5, 48)
    t = figures["totals"]
    assert (t["reservations"], t["confirmed"], t["cancelled"], t["checked_in"]) == (2, 0, 2, 2)
    assert t["revenue"] == [{"currency": "RUB", "gross": 2000, "refunded": 500, "net": 1500}]
    assert figures["attendance_rate"] is None  # nothing confirmed any more
    assert t["seats_left"] == 5


def test_figures_funnel_conversions_and_series_buckets() -> None:
    day = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [domain.Row("", day + H, {"page_views": 10, "unique_visitors": 8}),
            domain.Row("t", day + 2 * H, {"reservations": 4, "confirmations": 3}),
            domain.Row("t", day + 26 * H, {"checkins": 2, "confirmations": 1,
                                           "confirmed_cancellations": 1})]
    money = [domain.MoneyRow("t", day + 2 * H, "RUB", 300, 0),
             domain.MoneyRow("t", day + 2 * H, "USD", 7, 0),
             domain.MoneyRow("t", day + 26 * H, "RUB", 0, 100)]
    f = domain.figures(rows, money, "day", None, 48)
    assert [(s["step"], s["count"], s["conversion"]) for s in f["funnel"]] == [
        ("viewed", 8, None), ("reserved", 4, 0.5), ("confirmed", 3, 0.75),
        ("checked_in", 2, 0.6667)]
    assert f["attendance_rate"] == 0.6667
    assert f["totals"]["revenue"] == [
        {"currency": "RUB", "gross": 300, "refunded": 100, "net": 200},
        {"currency": "USD", "gross": 7, "refunded": 0, "net": 7}]
    assert [s["ts"] for s in f["series"]] == [day.isoformat(), (day + 24 * H).isoformat()]
    assert f["series"][1]["revenue_net"] == [{"currency": "RUB", "net": -100}]
    assert f["sales_velocity_per_day"] == 1.5
    assert len(domain.figures(rows, money, "hour", None, 48)["series"]) == 3


def test_visitor_hash_depends_on_salt_ip_and_agent_and_hides_the_ip() -> None:
    a = domain.visitor_id(b"s1", "198.51.100.1", "UA")
    assert a == domain.visitor_id(b"s1", "198.51.100.1", "UA")
    assert a != domain.visitor_id(b"s2", "198.51.100.1", "UA")
    assert a != domain.visitor_id(b"s1", "198.51.100.2", "UA")
    assert a != domain.visitor_id(b"s1", "198.51.100.1", "UA2")
    assert "198" not in a and len(a) == 32


@pytest.mark.parametrize("ua", [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; YandexBot/3.0)", "curl/8.5.0", "python-requests/2.32",
    "TelegramBot (like TwitterBot)", "facebookexternalhit/1.1", "", None,
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/126.0 Safari/537.36"])
def test_known_robots_are_dropped(ua: str | None) -> None:
    assert domain.is_bot(ua)


def test_browsers_are_not_robots() -> None:
    assert not domain.is_bot("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                             "(KHTML, like Gecko) Chrome/126.0 Safari/537.36")
    assert not domain.is_bot("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) "
                             "AppleWebKit/605.1.15 Version/17.5 Mobile/15E148 Safari/604.1")


def test_a_bad_item_is_named_and_limits_hold() -> None:
    now = T0
    ok = {"type": "page_view", "path": "/"}
    assert len(domain.parse_items([ok] * 50, now)) == 50
    with pytest.raises(Unprocessable) as e:
        domain.parse_items([ok] * 51, now)
    with pytest.raises(Unprocessable) as e:
        domain.parse_items([ok, {"type": "share", "path": "/"}], now)
    assert e.value.extensions["item"] == 1 and "items[1]" in e.value.detail
    with pytest.raises(Unprocessable):
        domain.parse_items([{**ok, "ts": (now + timedelta(hours=1)).isoformat()}], now)
    item = domain.parse_items([{**ok, "utm_source": "tg", "ts": "2026-03-01T09:00:00Z",
                                "event_id": "AB1C0000-0000-0000-0000-000000000000"}], now)[0]
    assert item.utm == {"utm_source": "tg"} and item.ts == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert item.event_id == "ab1c0000-0000-0000-0000-000000000000"


@pytest.mark.parametrize("cell, shown", [
    ("=SUM(A1)", "'=SUM(A1)"), ("+1", "'+1"), ("-2+3", "'-2+3"), ("@cmd", "'@cmd"),
    ("\t=x", "'\t=x"), ("Concert", "Concert"), ("", ""), (-5, -5), (7, 7)])
def test_csv_cells_that_look_like_formulas_are_neutralised(cell: object, shown: object) -> None:
    assert domain.neutralise(cell) == shown


def test_signed_links_expire_and_name_what_they_sign() -> None:
    sig = domain.sign(b"k", "dashboard", "e1", "1000")
    assert domain.signature_ok(b"k", sig, 1000, 999, "dashboard", "e1")
    assert not domain.signature_ok(b"k", sig, 1000, 1001, "dashboard", "e1")
    assert not domain.signature_ok(b"k", sig, 1000, 999, "dashboard", "e2")
    assert not domain.signature_ok(b"other", sig, 1000, 999, "dashboard", "e1")
