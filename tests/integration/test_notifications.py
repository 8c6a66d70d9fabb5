"""The notification service against a local Bot API double: queue, limits, errors, live ticket."""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import select

from cluster.settings import Settings
from serve.common.errors import Unprocessable
from serve.notifications import templates
from storage.engine import create_engine
from storage.notification import chats, notifications
from tests.fakes.telegram_api import IN_FLIGHT, FakeTelegram
from tests.integration.notify_support import envelope, new_user, registered, rig, telegram

__all__ = ["telegram"]


def registration(user: str, *, status: str = "pending_payment", amount: int = 150000,
                 event_id: str | None = None) -> tuple[str, dict[str, object]]:
    reg = str(uuid.uuid4())
    return reg, {"registration_id": reg, "event_id": event_id or str(uuid.uuid4()),
                 "organization_id": str(uuid.uuid4()), "ticket_type_id": str(uuid.uuid4()),
                 "user_id": user, "quantity": 1, "status": status, "amount": amount,
                 "currency": "RUB", "payment_mode": "full",
                 "expires_at": "2030-01-01T18:00:00+03:00"}


async def statuses(settings: Settings, user: str) -> list[str]:
    engine = create_engine(settings, "notification")
    try:
        async with engine.connect() as conn:
            return list((await conn.scalars(select(notifications.c.status).where(
                notifications.c.recipient_id == uuid.UUID(user))
                .order_by(notifications.c.id))).all())
    finally:
        await engine.dispose()


async def test_a_redelivered_event_sends_once(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake = telegram[0]
    user, chat = new_user()
    _reg, data = registration(user, status="confirmed", amount=0)
    created = envelope("registration.created", data)
    async with rig(migrated_settings, telegram) as r:
        await r.consume(registered(user, chat), created)
        await r.consume(created)  # the broker redelivered it
        # applied again past the inbox (a handler run twice): the unique key refuses it
        async with r.consumer.sessions() as session, session.begin():
            from messaging.outbox import UnitOfWork

            async with UnitOfWork(r.consumer.sessions, "notification", None) as uow:
                await r.consumer.handlers["registration.created"](uow, created)
        await r.drain()
        await r.drain()
    photos = [c for c in fake.sends(chat) if c.method == "sendPhoto"]
    assert len(photos) == 1
    uploaded = list(photos[0].files.values())
    assert uploaded and uploaded[0][:8] == b"\x89PNG\r\n\x1a\n"  # a file, not a link
    assert str(photos[0].params["protect_content"]).lower() == "true"
    assert [c.method for c in fake.sends(chat)] == ["sendMessage", "sendPhoto"]
    assert await statuses(migrated_settings, user) == ["sent", "sent"]


async def test_a_429_storm_delivers_each_once_and_never_before_retry_after(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake = telegram[0]
    users = [new_user() for _ in range(12)]
    fake.storm(3, retry_after=1)
    async with rig(migrated_settings, telegram) as r:
        await r.consume(*(registered(u, c) for u, c in users))
        await r.drain()
    delivered = Counter(int(c.params["chat_id"]) for c in fake.sends())
    assert all(delivered[c] == 1 for _, c in users), delivered
    assert fake.early_calls == 0
    refused = [c for c in fake.calls if c.answered == 429]
    assert len(refused) == 3
    later = [c.at for c in fake.sends() if c.at > refused[0].at + IN_FLIGHT]
    assert later and min(later) >= refused[0].at + 1.0
    for u, _ in users:
        assert await statuses(migrated_settings, u) == ["sent"]


async def test_the_overall_and_per_chat_rates_are_never_exceeded(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str], redis_url: str) -> None:
    fake = telegram[0]
    many = [new_user() for _ in range(40)]
    busy_user, busy_chat = new_user()
    async with rig(migrated_settings, telegram, per_second=10, redis_url=redis_url) as r:
        await r.consume(registered(busy_user, busy_chat))
        for _ in range(3):
            _reg, data = registration(busy_user, status="confirmed", amount=0)
            await r.consume(envelope("registration.created", data))
        await r.consume(*(registered(u, c) for u, c in many))
        started = time.monotonic()
        await r.drain()
        elapsed = time.monotonic() - started
    calls = fake.sends()
    assert len(calls) == 44
    per_second = Counter(int(c.at) for c in calls)
    assert max(per_second.values()) <= 10, per_second
    busy = sorted(c.at for c in calls if int(c.params["chat_id"]) == busy_chat)
    assert len(busy) == 4
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(busy)), busy
    assert elapsed >= 3.0  # 44 messages at 10 a second


async def test_a_403_marks_the_chat_unreachable_and_stops_sends(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake = telegram[0]
    user, chat = new_user()
    fake.block(chat)
    async with rig(migrated_settings, telegram) as r:
        await r.consume(registered(user, chat))
        for _ in range(2):
            await r.consume(envelope("registration.created", registration(
                user, status="confirmed", amount=0)[1]))
        await r.drain()
        await r.consume(envelope("registration.created", registration(
            user, status="confirmed", amount=0)[1]))
        await r.drain()
        async with r.consumer.sessions() as session:
            state = (await session.execute(select(chats).where(
                chats.c.user_id == uuid.UUID(user)))).one()
    assert state.unreachable and "blocked" in (state.unreachable_reason or "")
    attempts = [c for c in fake.calls if int(c.params.get("chat_id", 0)) == chat]
    assert len(attempts) == 1 and attempts[0].answered == 403
    assert await statuses(migrated_settings, user) == ["blocked"] * 4


async def test_user_text_arrives_escaped(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake = telegram[0]
    user, chat = new_user()
    async with rig(migrated_settings, telegram) as r:
        await r.consume(registered(user, chat, name="<b>Eve</b> {{ 7*7 }} & co"))
        await r.consume(envelope("event.cancelled", {
            "event_id": str(uuid.uuid4()), "organization_id": str(uuid.uuid4()),
            "title": "<script>x</script>", "starts_at": "2030-01-01"}))
        await r.drain()
    text = fake.sends(chat)[0].params["text"]
    assert "&lt;b&gt;Eve&lt;/b&gt; {{ 7*7 }} &amp; co" in text
    assert "<b>&lt;b&gt;" in text  # the template's own markup stays markup
    assert "49" not in text


def test_a_template_that_reaches_python_internals_is_refused() -> None:
    for body in ("{{ ''.__class__.__mro__[1].__subclasses__() }}",
                 "{{ name.__init__.__globals__ }}",
                 "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
                 "{% for x in () %}", "{{ missing_variable }}"):
        with pytest.raises(Unprocessable) as caught:
            templates.check("welcome", body)
        assert caught.value.slug == "invalid-template"
    assert "&lt;b&gt;" in templates.check("welcome", "Hi {{ name }}")


async def test_the_live_ticket_is_one_message_edited_in_place(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    fake = telegram[0]
    user, chat = new_user()
    reg, data = registration(user)
    pay = {"payment_id": str(uuid.uuid4()), "registration_id": reg,
           "event_id": data["event_id"], "user_id": user, "kind": "full", "amount": 150000,
           "currency": "RUB"}
    async with rig(migrated_settings, telegram) as r:
        await r.consume(registered(user, chat), envelope("registration.created", data))
        await r.drain()
        assert [c.method for c in fake.sends(chat)] == ["sendMessage"]  # waits for Pay
        await r.consume(envelope("payment.created", {
            **pay, "confirmation_url": "https://pay.example/checkout/1"}, "payment"))
        await r.drain()
        await r.consume(envelope("payment.completed", pay, "payment"))
        await r.drain()
        await r.consume(envelope("checkin.completed", {
            "registration_id": reg, "event_id": data["event_id"], "user_id": user,
            "checked_in_at": "2030-01-01T19:00:00Z"}))
        await r.drain()
    calls = fake.sends(chat)
    # the ticket is sent once its payment exists, with Pay, then edited as it moves
    assert [c.method for c in calls] == ["sendMessage", "sendPhoto", "sendMessage",
                                         "editMessageMedia", "editMessageCaption"]
    ticket_id = (chat, 1 + 1)  # the welcome is message 1, the ticket message 2
    assert all(int(c.params["message_id"]) == ticket_id[1] for c in calls[2:] if
               c.method.startswith("edit"))
    markup = calls[1].params["reply_markup"]["inline_keyboard"]
    assert markup[0][0] == {"text": "Pay", "url": "https://pay.example/checkout/1"}
    assert markup[1][0]["callback_data"] == f"release:{reg}"
    assert calls[3].files  # the QR replaced the card
    final = fake.messages[ticket_id]
    assert "reply_markup" not in final or not final["reply_markup"] or \
        final["reply_markup"]["inline_keyboard"] == []
    assert await statuses(migrated_settings, user) == ["sent"] * 5


async def test_a_callback_from_another_users_chat_changes_nothing(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    from serve.notifications.service import Updates
    from serve.notifications.telegram import BotGateway
    from storage.notification import tickets

    fake, url = telegram
    owner, owner_chat = new_user()
    stranger, stranger_chat = new_user()
    reg, data = registration(owner, status="confirmed", amount=0)
    released: list[tuple[str, str]] = []

    async def release(user: str, registration_id: str) -> None:  # the Event service's side
        released.append((user, registration_id))

    bot = BotGateway(fake.token, url)
    async with rig(migrated_settings, telegram) as r:
        await r.consume(registered(owner, owner_chat), registered(stranger, stranger_chat),
                        envelope("registration.created", data))
        await r.drain()
        updates = Updates(r.consumer.sessions, release=release,
                          reply=lambda chat, text: bot.send_text(chat, text, None),
                          answer=bot.answer_callback)

        def press(update_id: int, chat: int) -> dict[str, object]:
            return {"update_id": update_id, "callback_query": {
                "id": f"cb{update_id}", "from": {"id": chat, "is_bot": False, "first_name": "X"},
                "chat_instance": "c", "data": f"release:{reg}"}}

        base = int(uuid.uuid4().int % 10**12)
        assert await updates.handle(press(base, stranger_chat)) == "not-owner"
        assert released == []
        async with r.consumer.sessions() as session:
            status = await session.scalar(select(tickets.c.status).where(
                tickets.c.registration_id == uuid.UUID(reg)))
        assert status == "confirmed"
        assert await updates.handle(press(base, owner_chat)) == "duplicate"  # same update id
        assert await updates.handle(press(base + 1, owner_chat)) == "released"
        assert released == [(owner, reg)]
        # a kicked bot is an unreachable chat, until the user writes again
        kicked = {"update_id": base + 2, "my_chat_member": {
            "chat": {"id": owner_chat, "type": "private"}, "from": {"id": owner_chat},
            "date": 0, "old_chat_member": {"status": "member"},
            "new_chat_member": {"status": "kicked"}}}
        assert await updates.handle(kicked) == "blocked"
        async with r.consumer.sessions() as session:
            assert await session.scalar(select(chats.c.unreachable).where(
                chats.c.chat_id == owner_chat))
        stop = {"update_id": base + 3, "message": {
            "message_id": 5, "date": 0, "chat": {"id": owner_chat, "type": "private"},
            "from": {"id": owner_chat, "is_bot": False, "first_name": "A"}, "text": "/stop"}}
        assert await updates.handle(stop) == "stopped"
        async with r.consumer.sessions() as session:
            assert not await session.scalar(select(chats.c.unreachable).where(
                chats.c.chat_id == owner_chat))
    await bot.close()
    answers = [c for c in fake.calls if c.method == "answerCallbackQuery"]
    assert [a.params["text"] for a in answers] == ["This ticket is not yours",
                                                   "Your seat is released"]


async def test_without_a_token_messages_are_logged(migrated_settings: Settings) -> None:
    user, chat = new_user()
    async with rig(migrated_settings, None) as r:
        await r.consume(registered(user, chat))
        await r.drain()
    assert await statuses(migrated_settings, user) == ["logged"]


async def test_a_deep_link_links_an_email_account_to_the_chat(
        migrated_settings: Settings, telegram: tuple[FakeTelegram, str]) -> None:
    from serve.notifications.service import Updates, telegram_link
    from serve.notifications.telegram import BotGateway

    fake, url = telegram
    user, chat = new_user()
    link = telegram_link("link-secret", "afisha_test_bot", user)
    assert link["url"].startswith("https://t.me/afisha_test_bot?start=L")
    token = link["url"].split("start=", 1)[1]
    bot = BotGateway(fake.token, url)

    async def release(user: str, registration_id: str) -> None:
        raise AssertionError("not pressed")

    async with rig(migrated_settings, telegram) as r:
        await r.consume(registered(user, None))  # an e-mail account: no chat yet
        updates = Updates(r.consumer.sessions, release=release,
                          reply=lambda c, text: bot.send_text(c, text, None),
                          answer=bot.answer_callback, link_secret="link-secret")
        start = {"update_id": int(uuid.uuid4().int % 10**12), "message": {
            "message_id": 1, "date": 0, "chat": {"id": chat, "type": "private"},
            "from": {"id": chat, "is_bot": False, "first_name": "A", "language_code": "en"},
            "text": f"/start {token}"}}
        assert await updates.handle(start) == "linked"
        await r.consume(envelope("registration.created", registration(
            user, status="confirmed", amount=0)[1]))
        await r.drain()
    await bot.close()
    sent = fake.sends(chat)
    # the reply to /start, then the ticket; the welcome came while there was no chat: it is
    # recorded suppressed (not rendered, not sent later)
    assert [c.method for c in sent] == ["sendMessage", "sendPhoto"]
    assert "linked" in sent[0].params["text"]
    assert "1 x ticket" in sent[1].params["caption"]  # English: the chat's language
    assert await statuses(migrated_settings, user) == ["suppressed", "sent"]
