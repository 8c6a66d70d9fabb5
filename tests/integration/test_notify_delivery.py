"""The notification service's delivery guarantees and the bot's links to other services, against
the Bot API double: a cancelled event edits its live tickets, a stopped sender's rows are
recovered, users without a chat cost no queued row, chats reach the User service, /stats."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from cluster.settings import Settings
from serve.analytics.client import AnalyticsClient
from serve.common.context import RequestContext
from serve.notifications import deliveries, sender, service
from serve.notifications.service import STATS_REFUSED, Updates
from serve.notifications.stats import StatsLinks
from serve.notifications.telegram import BotGateway
from serve.users.client import UserClient
from serve.users.deployment import UserService
from storage.engine import create_engine
from storage.notification import chats, notifications, tickets
from storage.user import users as user_rows
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.analytics_support import envelope as analytics_envelope
from tests.integration.analytics_support import organization, start_platform
from tests.integration.notify_support import envelope, new_user, registered, rig, telegram
from tests.integration.test_notifications import registration, statuses
from tests.integration.users_support import LocalClient, identity_of, register, user_settings

__all__ = ["telegram"]


def message(chat: int, text: str, **sender: Any) -> dict[str, Any]:
    return {"update_id": int(uuid.uuid4().int % 10**12), "message": {
        "message_id": 1, "date": 0, "chat": {"id": chat, "type": "private"},
        "from": {"id": chat, "is_bot": False, "first_name": "A", **sender}, "text": text}}


def bot_updates(r: Any, bot: BotGateway, **kwargs: Any) -> Updates:
    async def release(user: str, registration_id: str) -> None:
        raise AssertionError("not pressed")

    return Updates(r.consumer.sessions, release=release,
                   reply=lambda c, text: bot.send_text(c, text, None),
                   answer=bot.answer_callback, **kwargs)


async def kinds_and_statuses(r: Any, user: str) -> list[Any]:
    """(template_key, status, last_error) of each of the user's notifications, in order."""
    async with r.consumer.sessions() as session:
        return list((await session.execute(
            select(notifications.c.template_key, notifications.c.status,
                   notifications.c.last_error)
            .where(notifications.c.recipient_id == uuid.UUID(user))
            .order_by(notifications.c.id))).all())


async def test_a_cancelled_event_edits_every_live_ticket(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake = telegram[0]
    event = str(uuid.uuid4())
    holders = [new_user() for _ in range(3)]
    no_chat = str(uuid.uuid4())
    async with rig(migrated_settings, telegram) as r:
        for user, chat in holders:
            await r.consume(registered(user, chat))
        await r.consume(*(envelope("registration.created", registration(
            u, status="confirmed", amount=0, event_id=event)[1]) for u, _ in holders))
        await r.consume(envelope("registration.created", registration(
            no_chat, status="confirmed", amount=0, event_id=event)[1]))
        await r.drain()
        shown = {int(c.params["chat_id"]) for c in fake.sends() if c.method == "sendPhoto"}
        assert shown == {c for _, c in holders}
        cancelled = envelope("event.cancelled", {
            "event_id": event, "organization_id": str(uuid.uuid4()), "title": "Gig",
            "starts_at": "2030-01-01"})
        await r.consume(cancelled)
        await r.consume(cancelled)  # redelivered: nothing more
        await r.drain()
    for user, chat in holders:
        calls = fake.sends(chat)
        assert [c.method for c in calls] == ["sendMessage", "sendPhoto", "sendMessage",
                                             "editMessageMedia"]
        edit = calls[-1]
        assert int(edit.params["message_id"]) == 2  # the ticket (the welcome is 1)
        assert "Событие отменено" in edit.params["media"]["caption"]
        assert "reply_markup" not in edit.params  # an edit without one removes the buttons
        assert "reply_markup" not in fake.messages[(chat, 2)]
        assert await statuses(migrated_settings, user) == ["sent"] * 4
    # no chat: the ticket and the notice are recorded, neither rendered nor sent
    assert await statuses(migrated_settings, no_chat) == ["suppressed", "suppressed"]


async def test_queued_ticket_messages_are_superseded_by_the_cancellation(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake = telegram[0]
    event = str(uuid.uuid4())
    user, chat = new_user()
    async with rig(migrated_settings, telegram) as r:
        await r.consume(registered(user, chat), envelope("registration.created", registration(
            user, status="confirmed", amount=0, event_id=event)[1]))
        await r.consume(envelope("event.cancelled", {
            "event_id": event, "organization_id": str(uuid.uuid4()), "title": "Gig",
            "starts_at": "2030-01-01"}))
        await r.drain()
    assert [c.method for c in fake.sends(chat)] == ["sendMessage", "sendMessage"]
    assert await statuses(migrated_settings, user) == ["sent", "suppressed", "sent"]


async def test_a_live_ticket_changed_before_it_was_sent_is_sent_once_as_it_is_now(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    """A free ticket and its check-in are both queued before the sender runs, as in a burst:
    one photo goes out, the later version; the earlier row is suppressed as superseded."""
    fake = telegram[0]
    user, chat = new_user()
    reg, data = registration(user, status="confirmed", amount=0)
    async with rig(migrated_settings, telegram) as r:
        await r.consume(registered(user, chat), envelope("registration.created", data),
                        envelope("checkin.completed", {
                            "registration_id": reg, "event_id": data["event_id"],
                            "user_id": user, "checked_in_at": "2030-01-01T19:00:00Z"}))
        await r.drain()
        rows = await kinds_and_statuses(r, user)
    calls = fake.sends(chat)
    assert [c.method for c in calls] == ["sendMessage", "sendPhoto"]
    assert "release" not in str(calls[1].params.get("reply_markup"))  # checked in: no button
    assert [(k, s) for k, s, _ in rows] == [("welcome", "sent"), ("ticket", "suppressed"),
                                            ("ticket", "sent")]
    assert rows[1].last_error == sender.SUPERSEDED


async def test_a_paid_ticket_is_first_sent_with_its_pay_button_whichever_comes_first(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    """A reservation to be paid gets one message, once its payment exists: not a ticket
    without Pay edited moments later. payment.created may be consumed before its
    registration.created (two relays): the button waits for the ticket it belongs to."""
    fake = telegram[0]
    async with rig(migrated_settings, telegram) as r:
        shown = []
        for payment_first in (False, True):
            user, chat = new_user()
            reg, data = registration(user, amount=150000)
            pay_url = "https://pay.example.org/checkout/" + uuid.uuid4().hex
            created = envelope("payment.created", {
                "payment_id": str(uuid.uuid4()), "registration_id": reg,
                "event_id": data["event_id"], "user_id": user, "kind": "full",
                "amount": 150000, "currency": "RUB", "confirmation_url": pay_url}, "payment")
            first, then = ((created, envelope("registration.created", data)) if payment_first
                           else (envelope("registration.created", data), created))
            await r.consume(registered(user, chat), first)
            await r.drain()
            assert [c.method for c in fake.sends(chat)] == ["sendMessage"]  # the welcome
            await r.consume(then)
            await r.drain()
            calls = fake.sends(chat)
            assert [c.method for c in calls] == ["sendMessage", "sendPhoto"], payment_first
            assert pay_url in str(calls[1].params.get("reply_markup"))
            assert "Ожидает оплаты" in calls[1].params["caption"]  # the registration's ticket
            shown.append([(k, s) for k, s, _ in await kinds_and_statuses(r, user)])
    assert shown == [[("welcome", "sent"), ("ticket", "sent")]] * 2


async def test_rows_a_stopped_sender_left_sending_are_recovered(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    """An edit is sent again (harmless); a new message is not (at most once), with the
    reason; a row marked moments ago is left to the sender that marked it."""
    fake = telegram[0]
    user, chat = new_user()
    reg, data = registration(user, amount=150000)
    pay = {"payment_id": str(uuid.uuid4()), "registration_id": reg,
           "event_id": data["event_id"], "user_id": user, "kind": "full", "amount": 150000,
           "currency": "RUB"}
    async with rig(migrated_settings, telegram) as r:
        await r.consume(registered(user, chat), envelope("registration.created", data),
                        envelope("payment.created", {
                            **pay, "confirmation_url": "https://pay.example/1"}, "payment"))
        await r.drain()
        await r.consume(envelope("payment.completed", pay, "payment"))
        async with r.consumer.sessions() as session, session.begin():
            stale = datetime.now(UTC) - timedelta(minutes=5)
            await session.execute(update(notifications).where(
                notifications.c.recipient_id == uuid.UUID(user),
                notifications.c.status == "queued").values(
                status="sending", sending_at=stale, attempts=1))
        before = len(fake.sends(chat))
        await r.drain()
        rows = await kinds_and_statuses(r, user)
        # a row marked a moment ago by a live sender stays its own
        await r.consume(envelope("checkin.completed", {
            "registration_id": reg, "event_id": data["event_id"], "user_id": user,
            "checked_in_at": "2030-01-01T19:00:00Z"}))
        async with r.consumer.sessions() as session, session.begin():
            await session.execute(update(notifications).where(
                notifications.c.recipient_id == uuid.UUID(user),
                notifications.c.status == "queued").values(
                status="sending", sending_at=datetime.now(UTC)))
        await r.drain()
    resent = fake.sends(chat)[before:]
    assert [c.method for c in resent] == ["editMessageMedia"]  # the QR edit, not the receipt
    assert [(k, s) for k, s, _ in rows] == [("welcome", "sent"), ("ticket", "sent"),
                                            ("receipt", "failed"), ("ticket", "sent")]
    assert rows[2].last_error == deliveries.STOPPED_SEND
    assert (await statuses(migrated_settings, user))[-1] == "sending"


async def test_a_user_without_a_chat_gets_a_suppressed_record_only(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake = telegram[0]
    user = str(uuid.uuid4())
    reg, data = registration(user)
    async with rig(migrated_settings, telegram) as r:
        await r.consume(envelope("registration.created", data), envelope("payment.created", {
            "payment_id": str(uuid.uuid4()), "registration_id": reg,
            "event_id": data["event_id"], "user_id": user, "kind": "full", "amount": 150000,
            "currency": "RUB", "confirmation_url": "https://pay.example/1"}, "payment"))
        await r.drain()
        async with r.consumer.sessions() as session:
            rows = (await session.execute(select(
                notifications.c.status, notifications.c.payload, notifications.c.last_error)
                .where(notifications.c.recipient_id == uuid.UUID(user)))).all()
    assert fake.sends() == []
    assert [(s, p, e) for s, p, e in rows] == [
        ("suppressed", {"type": "ticket"}, "no Telegram chat linked")]


async def test_linked_and_unreachable_chats_reach_the_user_service(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake, url = telegram
    settings = user_settings(migrated_settings, None)
    users = UserService(settings.to_runtime())
    client = UserClient(LocalClient("user", users))  # type: ignore[arg-type]
    account = await register(users)
    user_id = identity_of(account).user_id
    _, chat = new_user()
    link = service.telegram_link("link-secret", "afisha_test_bot", user_id)
    bot = BotGateway(fake.token, url)

    async def tell(user: str, chat_id: int, reachable: bool) -> bool:
        return await client.telegram_chat_changed(RequestContext(), user, chat_id, reachable)

    async def user_row() -> Any:
        engine = create_engine(settings, "user")
        try:
            async with engine.connect() as conn:
                return (await conn.execute(select(user_rows.c.telegram_id,
                                                  user_rows.c.telegram_chat_id)
                                           .where(user_rows.c.id == user_id))).one()
        finally:
            await engine.dispose()

    try:
        async with rig(migrated_settings, telegram) as r:
            await service.sync_chats(r.consumer.sessions, tell)  # chats earlier tests left
            changed: list[int] = []
            updates = bot_updates(r, bot, link_secret="link-secret",
                                  chat_changed=lambda: changed.append(1))
            token = link["url"].split("start=", 1)[1]
            assert await updates.handle(message(chat, f"/start {token}")) == "linked"
            assert changed == [1]
            assert await service.sync_chats(r.consumer.sessions, tell) == 1
            assert tuple(await user_row()) == (chat, chat)
            assert await service.sync_chats(r.consumer.sessions, tell) == 0  # told once
            kicked = {"update_id": int(uuid.uuid4().int % 10**12), "my_chat_member": {
                "chat": {"id": chat, "type": "private"}, "from": {"id": chat}, "date": 0,
                "old_chat_member": {"status": "member"},
                "new_chat_member": {"status": "kicked"}}}
            assert await updates.handle(kicked) == "blocked"
            assert await service.sync_chats(r.consumer.sessions, tell) == 1
            assert tuple(await user_row()) == (chat, None)
            assert await updates.handle(message(chat, "hello")) == "message"  # reachable
            assert await updates.handle(message(chat, "again")) == "message"  # no change
            assert changed == [1, 1, 1]
            assert await service.sync_chats(r.consumer.sessions, tell) == 1
            assert tuple(await user_row()) == (chat, chat)
            async with r.consumer.sessions() as session:
                assert await session.scalar(select(chats.c.user_synced).where(
                    chats.c.chat_id == chat))
    finally:
        await bot.close()
        await users.close()


async def test_stats_sends_an_organizer_their_dashboard_links(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake, url = telegram
    settings = user_settings(migrated_settings, None)
    p = await start_platform(settings)
    owner = await register(p.users)
    stranger = await register(p.users)
    org = await organization(p.users, owner, p.identity("admin"))
    event = str(uuid.uuid4())
    at = datetime.now(UTC) - timedelta(hours=1)
    await p.consumer.process(analytics_envelope(
        "event.created", at, event_id=event, organization_id=org, title="Jazz <night>",
        starts_at="2030-01-01T19:00:00+00:00"))
    links = StatsLinks(UserClient(LocalClient("user", p.users)),  # type: ignore[arg-type]
                       AnalyticsClient(LocalClient("analytics", p.analytics)))  # type: ignore[arg-type]
    bot = BotGateway(fake.token, url)
    (owner_id, owner_chat), (stranger_id, stranger_chat) = (
        (identity_of(owner).user_id, new_user()[1]), (identity_of(stranger).user_id,
                                                      new_user()[1]))
    try:
        async with rig(migrated_settings, telegram) as r:
            await r.consume(registered(owner_id, owner_chat), registered(stranger_id,
                                                                         stranger_chat))
            updates = bot_updates(r, bot, stats=links.links)
            assert await updates.handle(message(owner_chat, "/stats")) == "stats"
            assert await updates.handle(message(owner_chat, f"/stats {event}")) == "stats"
            assert await updates.handle(message(stranger_chat, "/stats")) == "stats-refused"
            assert await updates.handle(
                message(stranger_chat, f"/stats {event}")) == "stats-refused"
            assert await updates.handle(message(new_user()[1], "/stats")) == "stats-unlinked"
    finally:
        await bot.close()
        await p.http.aclose()
        await p.analytics.close()
        await p.users.close()
    listed, named = (c.params["text"] for c in fake.sends(owner_chat) if c.method == "sendMessage"
                     and "Dashboards" in c.params["text"])
    assert "Jazz &lt;night&gt;</a>" in listed
    for text in (listed, named):
        assert f"/api/v1/analytics/pages/dashboard?event_id={event}" in text
        assert "signature=" in text
    refusals = [c.params["text"] for c in fake.sends(stranger_chat)]
    assert refusals == [STATS_REFUSED, STATS_REFUSED]


async def test_a_telegram_account_attached_on_the_site_brings_its_chat(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    """user.updated ["telegram"] (the Login Widget on an e-mail account): the chat comes from
    the User service, so the next ticket reaches it."""
    from messaging.consumer import ConsumerRuntime
    from serve.notifications.handlers import NotificationHandlers
    from serve.users.schemas import TelegramLoginIn
    from tests.integration.users_support import ctx, widget

    fake = telegram[0]
    settings = user_settings(migrated_settings, None)
    users = UserService(settings.to_runtime())
    client = UserClient(LocalClient("user", users))  # type: ignore[arg-type]
    account = await register(users)
    me = identity_of(account)
    _, chat = new_user()
    await users.link_telegram(ctx(me), TelegramLoginIn(**widget(chat)))

    async def chat_of(user: uuid.UUID) -> int | None:
        return await client.telegram_chat_id(RequestContext(), str(user))

    try:
        async with rig(migrated_settings, telegram) as r:
            consumer = ConsumerRuntime("notification", r.consumer.sessions,
                                       NotificationHandlers(chat_lookup=chat_of).handlers())
            await consumer.process(envelope("user.updated", {
                "user_id": me.user_id, "changed": ["telegram"]}, "user"))
            await consumer.process(envelope("registration.created", registration(
                me.user_id, status="confirmed", amount=0)[1]))
            await r.drain()
    finally:
        await users.close()
    assert [c.method for c in fake.sends(chat)] == ["sendPhoto"]


async def test_due_rows_skip_busy_recipients_before_the_limit_and_carry_chat_and_ticket(
        migrated_settings: Settings) -> None:
    """The sender takes the oldest due queued rows of recipients not being sent to, the limit
    counted after the busy ones are left out, each with its chat and live ticket."""
    busy_user, busy_chat = new_user()
    free_user, free_chat = new_user()
    busy_reg, busy_data = registration(busy_user, status="confirmed", amount=0)
    free_reg, free_data = registration(free_user, status="confirmed", amount=0)
    async with rig(migrated_settings, None) as r:
        await r.consume(registered(busy_user, busy_chat), registered(free_user, free_chat),
                        envelope("registration.created", busy_data),
                        envelope("registration.created", free_data))
        async with r.consumer.sessions() as session, session.begin():  # as if shown once
            await session.execute(update(tickets).where(
                tickets.c.registration_id == uuid.UUID(busy_reg)).values(
                message_id=77, photo="card"))
        async with r.consumer.sessions() as session:
            queued = (await session.execute(
                select(notifications.c.id, notifications.c.recipient_id)
                .where(notifications.c.status == "queued",
                       notifications.c.not_before <= datetime.now(UTC))
                .order_by(notifications.c.id))).all()
            not_busy = [i for i, user in queued if user != uuid.UUID(busy_user)]
            upto_free = 1 + not_busy.index(
                next(i for i, user in queued if user == uuid.UUID(free_user)))
            taken = await deliveries.due(session, upto_free, [uuid.UUID(busy_user)])
            mine = [row for row in await deliveries.due(session, len(queued) + 5, [])
                    if str(row.recipient_id) in (busy_user, free_user)]
    assert [row.id for row in taken] == not_busy[:upto_free]  # the free user's row is in
    assert [(str(row.recipient_id), row.template_key) for row in mine] == [
        (busy_user, "welcome"), (free_user, "welcome"), (busy_user, "ticket"),
        (free_user, "ticket")]
    assert [row.chat_id for row in mine] == [busy_chat, free_chat, busy_chat, free_chat]
    assert [str(row.registration_id) for row in mine[2:]] == [busy_reg, free_reg]
    assert [(row.ticket_message_id, row.ticket_photo) for row in mine[2:]] == [
        (77, "card"), (None, None)]
