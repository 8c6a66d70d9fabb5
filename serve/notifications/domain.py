"""Pure rules of the notification service: statuses, Telegram's limits, errors, quiet hours.

Standard library and ``serve.common.errors`` only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from serve.common.errors import Unprocessable

Status = Literal["queued", "sent", "failed", "blocked", "suppressed", "logged"]
STATUSES: tuple[Status, ...] = ("queued", "sent", "failed", "blocked", "suppressed", "logged")
FINAL: frozenset[str] = frozenset({"sent", "failed", "blocked", "suppressed", "logged"})

# Message types; the essential ones are never suppressed (opt-out, /stop or quiet hours).
TYPES: tuple[str, ...] = ("welcome", "ticket", "receipt", "refund", "cancellation", "reminder",
                          "expiry", "waitlist_offer", "announcement")
NEVER_SUPPRESSED: frozenset[str] = frozenset({"ticket", "receipt", "cancellation"})

LOCALES: tuple[str, ...] = ("ru", "en")


def transition(current: str, new: str) -> str:
    """A notification moves only out of ``queued``; a final status never changes."""
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

@dataclass(frozen=True)
class Limits:
    """At most ``per_second`` messages in every wall-clock second (all chats), one per
    ``chat_interval_ms`` to a chat and ``group_per_minute`` to a group in any 60 s. ``guard_ms``
    keeps grants away from the end of a second and pads intervals, so a request that travels
    a few milliseconds still arrives inside the window it was counted in."""

    per_second: int = 25
    chat_interval_ms: int = 1000
    group_per_minute: int = 20
    guard_ms: int = 25


Reason = Literal["", "pause", "chat", "group", "second"]


@dataclass
class LimiterState:
    """The in-process limiter (the Redis script does the same arithmetic across replicas)."""

    limits: Limits = field(default_factory=Limits)
    paused_until_ms: int = 0
    last_chat_ms: dict[int, int] = field(default_factory=dict)
    group_sends: dict[int, deque[int]] = field(default_factory=dict)
    second: int = -1
    second_count: int = 0

    def acquire(self, now_ms: int, chat_id: int) -> tuple[int, Reason]:
        """``(0, "")`` and the send is counted, or how many ms to wait and which limit."""
        limits = self.limits
        if self.paused_until_ms > now_ms:
            return self.paused_until_ms - now_ms, "pause"
        last = self.last_chat_ms.get(chat_id)
        interval = limits.chat_interval_ms + limits.guard_ms
        if last is not None and now_ms - last < interval:
            return interval - (now_ms - last), "chat"
        group = is_group(chat_id)
        if group:
            sends = self.group_sends.setdefault(chat_id, deque())
            window = 60_000 + limits.guard_ms
            while sends and sends[0] <= now_ms - window:
                sends.popleft()
            if len(sends) >= limits.group_per_minute:
                return sends[0] + window - now_ms, "group"
        wait = second_wait(now_ms, limits.guard_ms)
        if wait:
            return wait, "second"
        second = now_ms // 1000
        if second != self.second:
            self.second, self.second_count = second, 0
        if self.second_count >= limits.per_second:
            return (second + 1) * 1000 - now_ms, "second"
        self.second_count += 1
        self.last_chat_ms[chat_id] = now_ms
        if group:
            self.group_sends[chat_id].append(now_ms)
        return 0, ""

    def pause(self, now_ms: int, retry_after_seconds: float) -> None:
        """A 429 pauses the whole bot for ``retry_after`` (plus the guard)."""
        until = now_ms + int(retry_after_seconds * 1000) + self.limits.guard_ms
        self.paused_until_ms = max(self.paused_until_ms, until)


def second_wait(now_ms: int, guard_ms: int) -> int:
    """Grants are not made in the last ``guard_ms`` of a second: wait for the next one."""
    into = now_ms % 1000
    return 1000 - into if into >= 1000 - guard_ms else 0


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
    if not hmac.compare_digest(mac, _link_mac(secret, body)):
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
