"""Pure rules of analytics: what each registration contributes to the hourly rollups, the
visitor hash, known bots, tracked items, the dashboard's figures and CSV neutralisation.

Standard library and ``serve.common.errors`` only.

Rollups are kept as the sum of each registration's *contribution*, a pure function of what is
known about the registration (its facts). A consumed message updates the facts (by merges that
do not depend on order: earliest timestamp wins, a capture or refund is a set member keyed by
its id), and the rollups receive ``contribution(after) - contribution(before)``. A duplicate
changes no fact and so adds nothing; events in any order end in the same facts and the same
rollups; a retried batch was rolled back with its inbox rows, so it applies once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from serve.common.errors import Unprocessable

# --- rollup counters ---------------------------------------------------------------------

COUNTERS: tuple[str, ...] = (
    "page_views", "unique_visitors", "ticket_views", "shares",
    "reservations", "confirmations", "cancellations", "confirmed_cancellations", "expiries",
    "checkins", "waitlist_joins",
)
# Revenue is kept apart, per currency (never summed across currencies).
MONEY: tuple[str, ...] = ("gross", "refunded")

NO_TICKET_TYPE = ""  # rollup rows of tracked views, which belong to no ticket type


def hour_of(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return ts.replace(minute=0, second=0, microsecond=0)


def day_of(ts: datetime) -> datetime:
    return hour_of(ts).replace(hour=0)


@dataclass(frozen=True)
class Money:
    """A capture or a refund of a registration: ``kind`` is ``gross`` or ``refunded``."""

    key: str  # payment id of a capture, refund id of a refund
    kind: str
    amount: int
    currency: str
    at: datetime


@dataclass
class Facts:
    """What analytics knows of one registration, whatever order it heard it in."""

    registration_id: str
    event_id: str | None = None
    organization_id: str | None = None
    ticket_type_id: str | None = None
    quantity: int | None = None
    reserved_at: datetime | None = None
    confirmed_at: datetime | None = None
    cancelled_at: datetime | None = None
    expired_at: datetime | None = None
    checked_in_at: datetime | None = None
    waitlist_offer: bool = False
    money: dict[str, Money] = field(default_factory=dict)

    def copy(self) -> Facts:
        return Facts(**{**self.__dict__, "money": dict(self.money)})


def _earliest(current: datetime | None, new: datetime | None) -> datetime | None:
    if current is None:
        return new
    if new is None:
        return current
    return min(current, new)


def parse_ts(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def merge(facts: Facts, event_type: str, occurred_at: datetime, data: Mapping[str, Any]) -> None:
    """Fold one domain event into a registration's facts (commutative and idempotent)."""
    if data.get("event_id") and facts.event_id is None:
        facts.event_id = str(data["event_id"]).lower()
    if event_type == "registration.created":
        facts.organization_id = str(data["organization_id"]).lower()
        facts.ticket_type_id = str(data["ticket_type_id"]).lower()
        facts.quantity = int(data["quantity"])
        facts.reserved_at = _earliest(facts.reserved_at, occurred_at)
        facts.waitlist_offer = bool(data.get("waitlist_offer"))
        if data.get("status") == "confirmed":  # a free ticket is confirmed at once
            facts.confirmed_at = _earliest(facts.confirmed_at, occurred_at)
    elif event_type == "payment.completed":
        facts.confirmed_at = _earliest(facts.confirmed_at, occurred_at)
        key = str(data["payment_id"])
        if key not in facts.money:
            facts.money[key] = Money(key, "gross", int(data["amount"]), str(data["currency"]),
                                     occurred_at)
    elif event_type == "payment.refunded":
        key = str(data["refund_id"])
        if key not in facts.money:
            facts.money[key] = Money(key, "refunded", int(data["refunded_amount"]),
                                     str(data["currency"]), occurred_at)
    elif event_type == "registration.cancelled":
        facts.cancelled_at = _earliest(facts.cancelled_at, occurred_at)
    elif event_type == "reservation.expired":
        facts.expired_at = _earliest(facts.expired_at, occurred_at)
        if facts.quantity is None and data.get("quantity") is not None:
            facts.quantity = int(data["quantity"])
    elif event_type == "checkin.completed":
        at = parse_ts(data.get("checked_in_at")) or occurred_at
        facts.checked_in_at = _earliest(facts.checked_in_at, at)


# (event_id, ticket_type_id, hour) -> counter -> value; (…, currency) -> money kind -> value
CounterKey = tuple[str, str, datetime]
MoneyKey = tuple[str, str, datetime, str]


@dataclass
class Delta:
    counters: dict[CounterKey, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    money: dict[MoneyKey, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def add(self, other: Delta, sign: int = 1) -> None:
        for ck, values in other.counters.items():
            for name, v in values.items():
                self.counters[ck][name] += sign * v
        for mk, values in other.money.items():
            for name, v in values.items():
                self.money[mk][name] += sign * v

    def nonzero(self) -> Delta:
        out = Delta()
        for ck, values in self.counters.items():
            if any(values.values()):
                out.counters[ck] = dict(values)
        for mk, values in self.money.items():
            if any(values.values()):
                out.money[mk] = dict(values)
        return out


def contribution(facts: Facts) -> Delta:
    """What a registration adds to the rollups; nothing until its registration.created is
    known (the ticket type and seats are in it)."""
    out = Delta()
    if facts.event_id is None or facts.ticket_type_id is None or facts.reserved_at is None:
        return out
    seats = facts.quantity or 0
    ev, tt = facts.event_id, facts.ticket_type_id

    def count(name: str, at: datetime | None) -> None:
        if at is not None:
            out.counters[(ev, tt, hour_of(at))][name] += seats

    count("reservations", facts.reserved_at)
    count("confirmations", facts.confirmed_at)
    count("cancellations", facts.cancelled_at)
    if facts.confirmed_at is not None:
        count("confirmed_cancellations", facts.cancelled_at)
    count("expiries", facts.expired_at)
    count("checkins", facts.checked_in_at)
    for m in facts.money.values():
        out.money[(ev, tt, hour_of(m.at), m.currency)][m.kind] += m.amount
    return out


def change(before: Facts, after: Facts) -> Delta:
    delta = contribution(after)
    delta.add(contribution(before), -1)
    return delta.nonzero()


# --- tracking ----------------------------------------------------------------------------

TRACK_TYPES = ("page_view", "ticket_view", "share")
MAX_BATCH = 50
UNIQUE_WINDOW = timedelta(minutes=30)
MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(days=2)
_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_COUNTER_OF_TYPE = {"page_view": "page_views", "ticket_view": "ticket_views", "share": "shares"}

# Lower-case substrings of User-Agents that are robots (crawlers, previewers, HTTP libraries,
# headless browsers). Matching any of them drops the item.
BOT_MARKERS: tuple[str, ...] = (
    "bot", "crawl", "spider", "slurp", "scrapy", "curl/", "wget/", "python-requests",
    "python-urllib", "httpx", "aiohttp", "go-http-client", "java/", "okhttp", "libwww",
    "headlesschrome", "phantomjs", "lighthouse", "pingdom", "uptimerobot", "facebookexternalhit",
    "embedly", "preview", "whatsapp", "telegrambot", "discordbot", "yandex", "bingpreview",
    "mediapartners", "feedfetcher", "ahrefs", "semrush", "petalbot", "bytespider", "gptbot",
)


def is_bot(user_agent: str | None) -> bool:
    """Known robots, and requests without a User-Agent (no browser sends none)."""
    if not user_agent or not user_agent.strip():
        return True
    ua = user_agent.lower()
    return any(marker in ua for marker in BOT_MARKERS)


def salt_day(ts: datetime) -> date:
    return ts.astimezone(UTC).date()


def visitor_id(salt: bytes, ip: str, user_agent: str) -> str:
    """Keyed hash of (daily salt, IP, User-Agent): the raw IP is never stored, and the same
    person is a new visitor the next day (the salt rotates)."""
    mac = hmac.new(salt, f"{ip}\x00{user_agent}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


@dataclass(frozen=True)
class TrackItem:
    type: str
    event_id: str | None
    path: str
    referrer: str | None
    utm: dict[str, str]
    ts: datetime

    @property
    def counter(self) -> str:
        return _COUNTER_OF_TYPE[self.type]


_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def parse_items(items: Any, now: datetime) -> list[TrackItem]:
    """Validate a whole batch; the first bad item is a 422 naming it (nothing is stored)."""
    if not isinstance(items, list) or not items:
        raise Unprocessable("send {\"items\": [...]} with 1 to 50 items", slug="invalid-track")
    if len(items) > MAX_BATCH:
        raise Unprocessable(f"at most {MAX_BATCH} items per batch, got {len(items)}",
                            slug="invalid-track", item=None)
    out = []
    for i, raw in enumerate(items):
        try:
            out.append(_item(raw, now))
        except (ValueError, TypeError, KeyError) as exc:
            raise Unprocessable(f"items[{i}]: {exc}", slug="invalid-track", item=i) from exc
    return out


def _text(raw: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")
    return value


def _item(raw: Any, now: datetime) -> TrackItem:
    if not isinstance(raw, Mapping):
        raise ValueError("must be an object")
    allowed = {"type", "event_id", "path", "referrer", "ts", *_UTM}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    kind = raw.get("type")
    if kind not in TRACK_TYPES:
        raise ValueError(f"type must be one of {', '.join(TRACK_TYPES)}")
    event_id = _text(raw, "event_id", 64)
    if event_id is not None and not _UUID.match(event_id):
        raise ValueError("event_id must be a UUID")
    if kind != "page_view" and event_id is None:
        raise ValueError(f"a {kind} needs an event_id")
    path = _text(raw, "path", 2048)
    if not path:
        raise ValueError("path is required")
    ts = now
    if raw.get("ts") is not None:
        parsed = parse_ts(raw["ts"])
        assert parsed is not None
        if parsed > now + MAX_FUTURE_SKEW:
            raise ValueError("ts is in the future")
        if parsed < now - MAX_AGE:
            raise ValueError("ts is more than 2 days old")
        ts = parsed
    utm = {k: v for k in _UTM if (v := _text(raw, k, 256)) is not None}
    return TrackItem(str(kind), event_id.lower() if event_id else None, path,
                     _text(raw, "referrer", 2048), utm, ts)


# --- dashboard figures -------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One rollup row as read: counters of (ticket type, hour)."""

    ticket_type_id: str
    hour: datetime
    values: Mapping[str, int]


@dataclass(frozen=True)
class MoneyRow:
    ticket_type_id: str
    hour: datetime
    currency: str
    gross: int
    refunded: int


def bucket(ts: datetime, interval: str) -> datetime:
    h = hour_of(ts)
    return h if interval == "hour" else h.replace(hour=0)


def ratio(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


def revenue(rows: Iterable[MoneyRow]) -> list[dict[str, Any]]:
    by: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        by[r.currency][0] += r.gross
        by[r.currency][1] += r.refunded
    return [{"currency": c, "gross": g, "refunded": f, "net": g - f}
            for c, (g, f) in sorted(by.items())]


def totals(rows: Sequence[Row]) -> dict[str, int]:
    sums = dict.fromkeys(COUNTERS, 0)
    for r in rows:
        for name in COUNTERS:
            sums[name] += int(r.values.get(name, 0))
    return sums


def figures(rows: Sequence[Row], money: Sequence[MoneyRow], interval: str,
            seats_left: int | None, hours_in_range: float,
            ticket_type_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The dashboard's numbers from rollup rows (see README: Analytics, figures)."""
    s = totals(rows)
    confirmed = s["confirmations"] - s["confirmed_cancellations"]
    names = ticket_type_names or {}
    out_totals = {
        "page_views": s["page_views"], "unique_visitors": s["unique_visitors"],
        "ticket_views": s["ticket_views"], "shares": s["shares"],
        "reservations": s["reservations"], "confirmed": confirmed,
        "cancelled": s["cancellations"], "expired": s["expiries"],
        "checked_in": s["checkins"], "waitlist": s["waitlist_joins"],
        "seats_left": seats_left, "revenue": revenue(money),
    }
    steps = [("viewed", s["unique_visitors"]), ("reserved", s["reservations"]),
             ("confirmed", confirmed), ("checked_in", s["checkins"])]
    funnel = []
    for i, (step, n) in enumerate(steps):
        funnel.append({"step": step, "count": n,
                       "conversion": None if i == 0 else ratio(n, steps[i - 1][1])})
    series_map: dict[datetime, dict[str, Any]] = {}

    def point(ts: datetime) -> dict[str, Any]:
        b = bucket(ts, interval)
        if b not in series_map:
            series_map[b] = {"ts": b, "page_views": 0, "unique_visitors": 0, "reservations": 0,
                             "confirmed": 0, "checked_in": 0, "revenue_net": {}}
        return series_map[b]

    for r in rows:
        p = point(r.hour)
        p["page_views"] += int(r.values.get("page_views", 0))
        p["unique_visitors"] += int(r.values.get("unique_visitors", 0))
        p["reservations"] += int(r.values.get("reservations", 0))
        p["confirmed"] += (int(r.values.get("confirmations", 0))
                           - int(r.values.get("confirmed_cancellations", 0)))
        p["checked_in"] += int(r.values.get("checkins", 0))
    for m in money:
        p = point(m.hour)
        p["revenue_net"][m.currency] = p["revenue_net"].get(m.currency, 0) + m.gross - m.refunded
    series = []
    for b in sorted(series_map):
        p = series_map[b]
        p["revenue_net"] = [{"currency": c, "net": v} for c, v in sorted(p["revenue_net"].items())]
        p["ts"] = b.isoformat()
        series.append(p)
    by_tt: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.ticket_type_id != NO_TICKET_TYPE:
            by_tt[r.ticket_type_id].append(r)
    money_tt: dict[str, list[MoneyRow]] = defaultdict(list)
    for m in money:
        money_tt[m.ticket_type_id].append(m)
    by_ticket_type = []
    for tt in sorted(set(by_tt) | set(money_tt)):
        t = totals(by_tt[tt])
        by_ticket_type.append({
            "ticket_type_id": tt, "name": names.get(tt),
            "reservations": t["reservations"],
            "confirmed": t["confirmations"] - t["confirmed_cancellations"],
            "cancelled": t["cancellations"], "expired": t["expiries"],
            "checked_in": t["checkins"], "revenue": revenue(money_tt[tt])})
    by_day: dict[date, list[MoneyRow]] = defaultdict(list)
    for m in money:
        by_day[m.hour.astimezone(UTC).date()].append(m)
    revenue_by_day = [{"day": d.isoformat(), "revenue": revenue(by_day[d])}
                      for d in sorted(by_day)]
    velocity = round(confirmed / (hours_in_range / 24), 4) if hours_in_range > 0 else None
    return {"totals": out_totals, "funnel": funnel,
            "attendance_rate": ratio(s["checkins"], confirmed) if confirmed > 0 else None,
            "sales_velocity_per_day": velocity,
            "series": series, "by_ticket_type": by_ticket_type,
            "revenue_by_day": revenue_by_day}


# --- exports -----------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading apostrophe
    (OWASP's advice); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def sign(secret: bytes, *parts: str) -> str:
    """HMAC-SHA256 over the parts of a signed URL (path and expiry)."""
    return hmac.new(secret, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, signature: str, expires: int, now: float, *parts: str) -> bool:
    if expires < now:
        return False
    return hmac.compare_digest(sign(secret, *parts, str(expires)).encode(),
                               signature.encode("utf-8", "surrogatepass"))
