"""Pure rules of the notification service: statuses, Telegram's limits, errors, quiet hours.

Standard library and ``serve.common.errors`` only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from serve.common.errors import Unprocessable

Status = Literal["queued", "sending", "sent", "failed", "blocked", "suppressed", "logged"]
STATUSES: tuple[Status, ...] = ("queued", "sending", "sent", "failed", "blocked", "suppressed",
                                "logged")
FINAL: frozenset[str] = frozenset({"sent", "failed", "blocked", "suppressed", "logged"})

# Message types; the essential ones are never suppressed (opt-out, /stop or quiet hours).
TYPES: tuple[str, ...] = ("welcome", "ticket", "receipt", "refund", "cancellation", "reminder",
                          "expiry", "waitlist_offer", "announcement")
NEVER_SUPPRESSED: frozenset[str] = frozenset({"ticket", "receipt", "cancellation"})

LOCALES: tuple[str, ...] = ("ru", "en")


def transition(current: str, new: str) -> str:
    """A notification moves only out of ``queued`` or ``sending``; a final status never
    changes."""
    if current not in STATUSES or new not in STATUSES:
        raise ValueError(f"unknown status {current!r} -> {new!r}")
    if current in FINAL:
        raise ValueError(f"a {current} notification is final")
    return new


def locale_of(language_code: str | None) -> str:
    """ru for Russian (and unknown), en for every other Telegram ``language_code``."""
    if not language_code:
        return "ru"
    base = language_code.lower().split("-")[0]
    return base if base in LOCALES else "en"


# --- Telegram's limits -------------------------------------------------------------------------

# Chats the in-process limiter remembers before it forgets those that no longer limit a send.
CHATS_KEPT = 10_000


@dataclass(frozen=True)
class Limits:
    """At most ``per_second`` messages in every wall-clock second (all chats), one per
    ``chat_interval_ms`` to a chat and ``group_per_minute`` to a group in any 60 s.

    Sends are paced, not burst: the global slots of a second are spread evenly over its first
    ``1000 - guard_ms`` ms, so a request that is late by up to ``guard_ms`` (a busy event loop,
    the network) still arrives inside the second it was counted in. ``guard_ms`` also pads the
    per-chat and per-group intervals."""

    per_second: int = 25
    chat_interval_ms: int = 1000
    group_per_minute: int = 20
    guard_ms: int = 100

    @property
    def pace_ms(self) -> float:
        return (1000 - self.guard_ms) / self.per_second


Reason = Literal["", "pause", "chat", "group"]


@dataclass
class LimiterState:
    """The in-process limiter (the Redis script does the same arithmetic across replicas).

    ``acquire`` either refuses for now (``pause``, ``chat``, ``group``: wait and ask again) or
    reserves the next global slot and answers ``(wait, "")``: send ``wait`` ms from now."""

    limits: Limits = field(default_factory=Limits)
    paused_until_ms: int = 0
    next_slot_ms: float = 0.0
    last_chat_ms: dict[int, float] = field(default_factory=dict)
    group_sends: dict[int, deque[float]] = field(default_factory=dict)
    per_second: dict[int, int] = field(default_factory=dict)

    def acquire(self, now_ms: int, chat_id: int) -> tuple[int, Reason]:
        limits = self.limits
        if self.paused_until_ms > now_ms:
            return self.paused_until_ms - now_ms, "pause"
        last = self.last_chat_ms.get(chat_id)
        interval = limits.chat_interval_ms + limits.guard_ms
        if last is not None and now_ms - last < interval:
            return math.ceil(interval - (now_ms - last)), "chat"
        group = is_group(chat_id)
        if group:
            sends = self.group_sends.setdefault(chat_id, deque())
            window = 60_000 + limits.guard_ms
            while sends and sends[0] <= now_ms - window:
                sends.popleft()
            if len(sends) >= limits.group_per_minute:
                return math.ceil(sends[0] + window - now_ms), "group"
        slot = next_slot(max(float(now_ms), self.next_slot_ms), limits,
                         lambda second: self.per_second.get(second, 0))
        second = int(slot // 1000)
        self.per_second[second] = self.per_second.get(second, 0) + 1
        for old in [k for k in self.per_second if k < now_ms // 1000 - 1]:
            del self.per_second[old]
        self.next_slot_ms = slot + limits.pace_ms
        self.last_chat_ms[chat_id] = slot
        if group:
            self.group_sends[chat_id].append(slot)
        if len(self.last_chat_ms) > CHATS_KEPT:
            self.forget_idle_chats(now_ms)
        return math.ceil(slot - now_ms), ""

    def forget_idle_chats(self, now_ms: int) -> None:
        """Drop the chats whose last sends no longer limit the next one (a bot talks to any
        number of chats over time; the limits look back one interval, or a minute in groups)."""
        interval = self.limits.chat_interval_ms + self.limits.guard_ms
        window = 60_000 + self.limits.guard_ms
        self.last_chat_ms = {c: t for c, t in self.last_chat_ms.items() if now_ms - t < interval}
        self.group_sends = {c: s for c, s in self.group_sends.items()
                            if s and s[-1] > now_ms - window}

    def pause(self, now_ms: int, retry_after_seconds: float) -> None:
        """A 429 pauses the whole bot for ``retry_after`` (plus the guard)."""
        until = now_ms + int(retry_after_seconds * 1000) + self.limits.guard_ms
        self.paused_until_ms = max(self.paused_until_ms, until)

    def paused(self, now_ms: int) -> bool:
        return self.paused_until_ms > now_ms


def next_slot(earliest: float, limits: Limits, count: Callable[[int], int]) -> float:
    """The first moment from ``earliest`` outside a second's guard whose second has room."""
    slot = earliest
    for _ in range(1000):
        into = slot % 1000
        if into >= 1000 - limits.guard_ms:
            slot += 1000 - into
            continue
        if count(int(slot // 1000)) >= limits.per_second:
            slot += 1000 - into
            continue
        return slot
    return slot


def is_group(chat_id: int) -> bool:
    """Group and channel chat ids are negative; private chats are the user's positive id."""
    return chat_id < 0


# --- Bot API errors ----------------------------------------------------------------------------

Verdict = Literal["sent", "retry_after", "blocked", "resend", "migrated", "failed", "retry"]

_UNREACHABLE = re.compile(r"blocked|deactivated|can't initiate|cannot initiate|chat not found|"
                          r"kicked|not enough rights to send|user not found", re.I)


def classify(error_code: int | None, description: str) -> Verdict:
    """What an unsuccessful Bot API answer means for the message being sent."""
    text = description.lower()
    if error_code == 429:
        return "retry_after"
    if error_code == 403 or (error_code == 400 and _UNREACHABLE.search(text)):
        return "blocked"
    if error_code == 400 and "message is not modified" in text:
        return "sent"
    if error_code == 400 and ("message to edit not found" in text
                              or "message can't be edited" in text
                              or "message_id_invalid" in text):
        return "resend"
    if error_code is None or error_code >= 500:
        return "retry"
    return "failed"


# --- Preferences -------------------------------------------------------------------------------

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(value: str) -> time:
    match = _HHMM.match(value)
    if match is None:
        raise Unprocessable(f"{value!r} is not a time of day HH:MM", slug="invalid-preferences")
    return time(int(match.group(1)), int(match.group(2)))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Unprocessable(f"unknown time zone {name!r}", slug="invalid-preferences") from exc


@dataclass(frozen=True)
class Preferences:
    telegram: bool = True
    opt_out: tuple[str, ...] = ()
    quiet_start: str | None = None
    quiet_end: str | None = None
    time_zone: str = "UTC"

    def validate(self) -> Preferences:
        unknown = sorted(set(self.opt_out) - set(TYPES))
        if unknown:
            raise Unprocessable(f"unknown message types {', '.join(unknown)}",
                                slug="invalid-preferences")
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise Unprocessable("quiet hours need both quiet_start and quiet_end",
                                slug="invalid-preferences")
        if self.quiet_start is not None and self.quiet_end is not None:
            parse_hhmm(self.quiet_start)
            parse_hhmm(self.quiet_end)
        zone(self.time_zone)
        return self


Decision = tuple[Literal["send", "suppress", "defer"], datetime | None]


def decide(prefs: Preferences, message_type: str, now: datetime) -> Decision:
    """Send now, suppress (the user does not want it) or defer until quiet hours end. Tickets,
    receipts and cancellations are always sent at once."""
    if message_type in NEVER_SUPPRESSED:
        return "send", None
    if not prefs.telegram or message_type in prefs.opt_out:
        return "suppress", None
    end = quiet_until(prefs, now)
    return ("defer", end) if end is not None else ("send", None)


def quiet_until(prefs: Preferences, now: datetime) -> datetime | None:
    """When the quiet hours ``now`` falls in end (aware, UTC-comparable), else ``None``."""
    if prefs.quiet_start is None or prefs.quiet_end is None:
        return None
    tz = zone(prefs.time_zone)
    local = now.astimezone(tz)
    start, end = parse_hhmm(prefs.quiet_start), parse_hhmm(prefs.quiet_end)
    if start == end:
        return None
    t = local.time().replace(second=0, microsecond=0)
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    end_day = local.date() if (start < end or t < end) else local.date() + timedelta(days=1)
    return datetime.combine(end_day, end, tzinfo=tz)


# --- deep links ----------------------------------------------------------------------------

LINK_PREFIX = "L"


def _link_mac(secret: str, body: str) -> str:
    mac = hmac.new(hashlib.sha256(b"afisha-telegram-link:" + secret.encode()).digest(),
                   body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:12]).decode()


def link_token(secret: str, user_id: str, expires_epoch: int) -> str:
    """A ``/start`` payload (at most 64 of ``[A-Za-z0-9_-]``) naming the account to link."""
    body = f"{LINK_PREFIX}{uuid.UUID(user_id).hex}{_base36(expires_epoch)}"
    return f"{body}_{_link_mac(secret, body)}"


def verify_link_token(secret: str, token: str, now_epoch: int) -> str | None:
    """The user id a genuine, unexpired link token names, else ``None``."""
    body, _, mac = token.partition("_")
    if not body.startswith(LINK_PREFIX) or len(body) < 34 or not mac:
        return None
    given = mac.encode("utf-8", "surrogatepass")  # any text compares, none raises
    if not hmac.compare_digest(given, _link_mac(secret, body).encode("utf-8", "surrogatepass")):
        return None
    try:
        user = uuid.UUID(hex=body[1:33])
        expires = int(body[33:], 36)
    except ValueError:
        return None
    return str(user) if expires >= now_epoch else None


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if value == 0:
            return out
