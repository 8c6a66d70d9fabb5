"""The ticket lives in Telegram: the whole flow through the running platform and the Bot API
double (Telegram login -> welcome -> paid registration with Pay -> sandbox checkout -> the same
message shows the QR -> check-in edits it -> event cancelled -> notice)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from serve.users.telegram import sign
from tests.e2e.conftest import RunningPlatform
from tests.e2e.test_event_flow import account, auth
from tests.e2e.test_paid_flow import eventually, paid_event, payment_of, status
from tests.fakes.telegram_api import FakeTelegram


def telegram_account(http: Any, bot: FakeTelegram, telegram_id: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": telegram_id, "first_name": "<b>Tg</b> {{ 1 }}",
                              "auth_date": int(time.time())}
    fields["hash"] = sign(fields, bot.token)
    made = http.post("/api/v1/auth/telegram", json=fields)
    assert made.status_code in (200, 201), made.text
    body: dict[str, Any] = made.json()
    return body


def test_the_ticket_lives_in_telegram(platform: RunningPlatform, bot_api: FakeTelegram) -> None:
    chat = int(uuid.uuid4().int % 10**9) + 10**9
    with platform.client() as http:
        owner = account(http, f"org-{uuid.uuid4().hex[:8]}@example.org")
        fan = telegram_account(http, bot_api, chat)
        welcome = eventually(lambda: bot_api.sends(chat), "the welcome", timeout=60)
        assert "&lt;b&gt;Tg&lt;/b&gt; {{ 1 }}" in welcome[0].params["text"]

        event_id, tt_id = paid_event(http, owner, price=2_500)
        reg = http.post(f"/api/v1/events/{event_id}/registrations", headers=auth(fan),
                        json={"ticket_type_id": tt_id, "quantity": 1, "payment_mode": "full"})
        assert reg.status_code == 201, reg.text
        reg_id = reg.json()["id"]

        def with_pay() -> Any:
            for call in bot_api.sends(chat):
                markup = (call.params.get("reply_markup") or {}).get("inline_keyboard") or []
                if any(b.get("text") == "Pay" for row in markup for b in row):
                    return call
            return None

        eventually(with_pay, "the ticket with its Pay button", timeout=60)
        photo = next(c for c in bot_api.sends(chat) if c.method == "sendPhoto")
        ticket_message = photo.params.get("message_id") or 2
        assert str(photo.params["protect_content"]).lower() == "true"
        assert "Concert" in photo.params["caption"]

        payment = payment_of(http, fan, reg_id, "full")
        http.post(f"/api/v1/payments/{payment['id']}/sandbox-checkout", headers=auth(fan),
                  json={"outcome": "succeeded"})
        confirmed = status(http, fan, f"/api/v1/registrations/{reg_id}", "confirmed")
        eventually(lambda: [c for c in bot_api.sends(chat) if c.method == "editMessageMedia"],
                   "the QR to replace the card", timeout=60)
        done = http.post(f"/api/v1/registrations/{reg_id}/check-in", headers=auth(owner),
                         json={"ticket_code": confirmed["ticket_code"]})
        assert done.status_code == 200, done.text
        eventually(lambda: "Checked in" in bot_api.messages[(chat, ticket_message)]
                   .get("caption", "") or "Вход отмечен" in
                   bot_api.messages[(chat, ticket_message)].get("caption", ""),
                   "the check-in to edit the ticket", timeout=60)
        edits = [c for c in bot_api.sends(chat) if c.method.startswith("edit")]
        assert {int(c.params["message_id"]) for c in edits} == {ticket_message}
        photos = [c for c in bot_api.sends(chat) if c.method == "sendPhoto"]
        assert len(photos) == 1  # one message per registration

        assert http.post(f"/api/v1/events/{event_id}/cancel", headers=auth(owner)).is_success
        eventually(lambda: [c for c in bot_api.sends(chat) if c.method == "sendMessage"
                            and "Concert" in c.params.get("text", "")
                            and ("cancel" in c.params["text"] or "отмен" in c.params["text"])],
                   "the cancellation notice", timeout=60)
        def all_sent() -> bool:
            """Sent, each one; or a ticket version a later one replaced before it went out."""
            log = http.get("/api/v1/notifications/log", headers=auth(fan)).json()
            return bool(log["items"]) and all(e["status"] == "sent" or (
                e["status"] == "suppressed"
                and (e["last_error"] or "").startswith("superseded")) for e in log["items"])

        eventually(all_sent, "every notification of the fan to be sent", timeout=60)
        assert http.post("/api/v1/telegram/webhook", json={"update_id": 1},
                         headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
                         ).status_code == 401
