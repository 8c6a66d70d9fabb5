"""Helpers of the analytics tests: the real analytics and user services in-process, the gateway
over them, an organization made through the user service, and a seeded history with its
known answers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from messaging.consumer import ConsumerRuntime
from messaging.envelope import Envelope
from serve.analytics.deployment import AnalyticsService
from serve.common.context import Identity, RequestContext
from serve.common.errors import ServiceUnavailable
from serve.gateway.app import create_app
from serve.gateway.services import Services
from serve.users.deployment import UserService
from serve.users.schemas import OrganizationRequestIn, TokenPairOut
from tests.integration.users_support import (
    Absent,
    LocalClient,
    admin_email,
    identity_of,
    register,
)

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
BROWSER_B = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Gecko/20100101 Firefox/127.0"
BROWSER_C = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) AppleWebKit/605.1.15 Mobile Safari/604.1"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


class EventServiceDown:
    """The event service not running: the only thing analytics asks it here is the seats
    left, which the dashboard then shows as null."""

    name = "event"

    async def call(self, method: str, *args: Any) -> Any:
        raise ServiceUnavailable(f"event service not deployed in this test ({method})")


def ctx_of(identity: Identity | None) -> RequestContext:
    return RequestContext(identity=identity, client_ip="10.0.0.9")


async def organization(users: UserService, owner: TokenPairOut, admin: Identity) -> str:
    me = identity_of(owner)
    request = await users.create_organization_request(
        ctx_of(me), OrganizationRequestIn(name=f"Org {uuid.uuid4().hex[:6]}"))
    request_id = request.id if hasattr(request, "id") else request["id"]
    await users.review_organization_request(ctx_of(admin), str(request_id), "approve", None)
    org = await users.create_organization(ctx_of(me), str(request_id))
    return str(org.id if hasattr(org, "id") else org["id"])


@dataclass
class Platform:
    analytics: AnalyticsService
    users: UserService
    http: httpx.AsyncClient
    consumer: ConsumerRuntime
    admin: TokenPairOut
    app: Any = None
    tokens: dict[str, TokenPairOut] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        pair = self.admin if who == "admin" else self.tokens[who]
        return {"Authorization": f"Bearer {pair.access_token}"}

    def identity(self, who: str) -> Identity:
        return identity_of(self.admin if who == "admin" else self.tokens[who])


async def start_platform(settings: Any) -> Platform:
    users = UserService(settings.to_runtime())
    analytics = AnalyticsService(settings.to_runtime(), EventServiceDown(),
                                 LocalClient("user", users))
    services = Services(user=LocalClient("user", users), event=EventServiceDown(),
                        payment=Absent(), notification=Absent(),  # type: ignore[arg-type]
                        media=Absent(),  # type: ignore[arg-type]
                        analytics=LocalClient("analytics", analytics))
    app = create_app(settings, services)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 5000)),
                             base_url="http://gw")
    consumer = ConsumerRuntime("analytics", analytics.sessions, analytics.message_handlers(),
                               delivery_limit=2, retry_backoff=0.0)
    admin = await register(users, admin_email(settings))
    return Platform(analytics, users, http, consumer, admin, app)


def envelope(event_type: str, at: datetime, /, **data: Any) -> Envelope:
    producer = "payment" if event_type.startswith("payment.") else "event"
    return Envelope(type=event_type, occurred_at=at, producer=producer, correlation_id="seed",
                    data=data)


@dataclass
class History:
    """A sale over two days with known answers (README: Analytics, figures)."""

    event_id: str
    organization_id: str
    day1: datetime
    day2: datetime
    tt_paid: str = field(default_factory=lambda: str(uuid.uuid4()))
    tt_free: str = field(default_factory=lambda: str(uuid.uuid4()))
    envelopes: list[Envelope] = field(default_factory=list)

    def build(self, title: str = "Concert") -> list[Envelope]:
        ev, org, d1, d2 = self.event_id, self.organization_id, self.day1, self.day2
        h = timedelta(hours=1)
        m = timedelta(minutes=1)
        regs = {k: str(uuid.uuid4()) for k in ("r1", "r2", "r3", "r4", "r5", "r6")}
        user = str(uuid.uuid4())

        def created(reg: str, at: datetime, tt: str, qty: int, amount: int,
                    status: str = "pending_payment") -> Envelope:
            return envelope("registration.created", at, registration_id=regs[reg],
                            event_id=ev, organization_id=org, ticket_type_id=tt, user_id=user,
                            quantity=qty, status=status, amount=amount, currency="RUB",
                            payment_mode="full" if amount else "free")

        def paid(reg: str, at: datetime, amount: int) -> tuple[str, Envelope]:
            pid = str(uuid.uuid4())
            return pid, envelope("payment.completed", at, payment_id=pid,
                                 registration_id=regs[reg], event_id=ev, user_id=user,
                                 kind="full", amount=amount, currency="RUB")

        def refunded(reg: str, pid: str, at: datetime, amount: int, refund: int,
                     full: bool) -> Envelope:
            return envelope("payment.refunded", at, payment_id=pid, registration_id=regs[reg],
                            event_id=ev, user_id=user, kind="full", amount=amount,
                            currency="RUB", refund_id=str(uuid.uuid4()),
                            refunded_amount=refund, fully_refunded=full)

        def joined(entry: str, at: datetime) -> Envelope:
            return envelope("waitlist.joined", at, entry_id=entry, event_id=ev,
                            organization_id=org, ticket_type_id=self.tt_paid,
                            user_id=str(uuid.uuid4()), quantity=1, joined_at=at.isoformat())

        entries = [str(uuid.uuid4()) for _ in range(2)]
        _, pay1 = paid("r1", d1 + 11 * h + 5 * m, 2000)
        p2, pay2 = paid("r2", d1 + 12 * h + 10 * m, 1000)
        p3, pay3 = paid("r3", d1 + 13 * h + 5 * m, 1000)
        self.envelopes = [
            envelope("event.created", d1, event_id=ev, organization_id=org, title=title,
                     starts_at=(d2 + 20 * h).isoformat()),
            envelope("event.published", d1 + m, event_id=ev, organization_id=org, title=title,
                     starts_at=(d2 + 20 * h).isoformat()),
            created("r1", d1 + 11 * h, self.tt_paid, 2, 2000), pay1,
            created("r2", d1 + 12 * h, self.tt_paid, 1, 1000), pay2,
            created("r3", d1 + 13 * h, self.tt_paid, 1, 1000), pay3,
            created("r4", d1 + 14 * h, self.tt_paid, 3, 3000),
            envelope("reservation.expired", d1 + 14 * h + 15 * m, reservation_id=str(uuid.uuid4()),
                     registration_id=regs["r4"], event_id=ev, user_id=user, quantity=3),
            refunded("r2", p2, d2 + 8 * h, 1000, 400, False),
            refunded("r3", p3, d2 + 9 * h, 1000, 1000, True),
            envelope("registration.cancelled", d2 + 9 * h + m, registration_id=regs["r3"],
                     event_id=ev, user_id=user, reason="refunded"),
            # Two people join the waiting list; the first join's message is published twice.
            joined(entries[0], d2 + 9 * h + 30 * m),
            joined(entries[0], d2 + 9 * h + 30 * m),
            joined(entries[1], d2 + 9 * h + 40 * m),
            created("r5", d2 + 10 * h, self.tt_free, 1, 0, status="confirmed"),
            created("r6", d2 + 11 * h, self.tt_paid, 1, 1000),
            envelope("reservation.expired", d2 + 11 * h + 15 * m,
                     reservation_id=str(uuid.uuid4()), registration_id=regs["r6"],
                     event_id=ev, user_id=user, quantity=1),
            envelope("checkin.completed", d2 + 19 * h, registration_id=regs["r1"], event_id=ev,
                     user_id=user, checked_in_at=(d2 + 19 * h).isoformat()),
            # A rescan of the same ticket counts once.
            envelope("checkin.completed", d2 + 19 * h + 3 * m, registration_id=regs["r1"],
                     event_id=ev, user_id=user, checked_in_at=(d2 + 19 * h + 3 * m).isoformat()),
            envelope("checkin.completed", d2 + 19 * h + 30 * m, registration_id=regs["r5"],
                     event_id=ev, user_id=user,
                     checked_in_at=(d2 + 19 * h + 30 * m).isoformat()),
        ]
        return self.envelopes


# The known answers of History (views are added by the tracking part of the tests).
EXPECTED_TOTALS = {"reservations": 9, "confirmed": 4, "cancelled": 1, "expired": 4,
                   "checked_in": 3, "waitlist": 2}
EXPECTED_REVENUE = [{"currency": "RUB", "gross": 4000, "refunded": 1400, "net": 2600}]


def days() -> tuple[datetime, datetime]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=3), today - timedelta(days=2)
