"""A local double of the Telegram Bot API: ``<root>/bot<token>/<method>``.

It speaks the Bot API's shapes (JSON, url-encoded and multipart requests; ``{"ok": true,
"result": ...}`` answers and ``{"ok": false, "error_code", "description", "parameters"}``
errors), keeps the messages it sent per chat so edits behave like Telegram's (an unknown
message is "message to edit not found", the same content is "message is not modified"), and
records every call with the time it arrived. Tests script failures: a 429 storm with
``retry_after``, 403 for a chat, any 400 for the next call.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SEND_METHODS = frozenset({"sendMessage", "sendPhoto"})
IN_FLIGHT = 0.25  # a request on its way when the 429 was answered (a loaded machine)
EDIT_METHODS = frozenset({"editMessageText", "editMessageCaption", "editMessageMedia",
                          "editMessageReplyMarkup"})


@dataclass
class Call:
    at: float  # time.time() when it arrived
    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    answered: int  # HTTP status answered


@dataclass
class Scripted:
    status: int
    description: str
    parameters: dict[str, Any] | None = None
    methods: frozenset[str] | None = None


@dataclass
class FakeTelegram:
    token: str = "123456:TEST-token"
    username: str = "afisha_test_bot"
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    blocked: dict[int, str] = field(default_factory=dict)
    migrated: dict[int, int] = field(default_factory=dict)
    script: deque[Scripted] = field(default_factory=deque)
    updates: list[dict[str, Any]] = field(default_factory=list)
    paused_until: float = 0.0
    # Calls that arrived while a 429's retry_after still ran, past IN_FLIGHT seconds after the
    # 429 was answered (requests already on their way when it was are not the client's fault).
    early_calls: int = 0
    paused_at: float = 0.0
    webhook: dict[str, Any] | None = None
    url: str = ""  # where it listens, once running
    _next_id: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- scripting ---
    def fail_next(self, count: int, status: int, description: str,
                  parameters: dict[str, Any] | None = None,
                  methods: frozenset[str] | None = SEND_METHODS | EDIT_METHODS) -> None:
        for _ in range(count):
            self.script.append(Scripted(status, description, parameters, methods))

    def storm(self, count: int, retry_after: int) -> None:
        """The next ``count`` sends answer 429 and pause the bot for ``retry_after``."""
        self.fail_next(count, 429, f"Too Many Requests: retry after {retry_after}",
                       {"retry_after": retry_after})

    def block(self, chat_id: int) -> None:
        self.blocked[chat_id] = "Forbidden: bot was blocked by the user"

    def push_update(self, update: dict[str, Any]) -> None:
        with self._lock:
            update.setdefault("update_id", len(self.updates) + 1)
            self.updates.append(update)

    # --- reading ---
    def sends(self, chat_id: int | None = None, ok_only: bool = True) -> list[Call]:
        return [c for c in self.calls if c.method in SEND_METHODS | EDIT_METHODS
                and (not ok_only or c.answered == 200)
                and (chat_id is None or int(c.params.get("chat_id", 0)) == chat_id)]

    # --- answering ---
    def _message(self, chat_id: int, params: dict[str, Any], photo: bool) -> dict[str, Any]:
        self._next_id[chat_id] = self._next_id.get(chat_id, 0) + 1
        message: dict[str, Any] = {
            "message_id": self._next_id[chat_id], "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group",
                     **({"first_name": "T"} if chat_id > 0 else {"title": "G"})},
            "from": {"id": 1, "is_bot": True, "first_name": "Afisha",
                     "username": self.username}}
        if photo:
            message["photo"] = [{"file_id": f"f{chat_id}-{message['message_id']}",
                                 "file_unique_id": f"u{message['message_id']}",
                                 "width": 640, "height": 360}]
            message["caption"] = params.get("caption", "")
        else:
            message["text"] = params.get("text", "")
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        return message

    def answer(self, method: str, params: dict[str, Any], files: dict[str, bytes],
               arrived: float | None = None) -> tuple[int, dict[str, Any]]:
        now = arrived if arrived is not None else time.time()
        with self._lock:
            if (method in SEND_METHODS | EDIT_METHODS
                    and self.paused_at + IN_FLIGHT < now < self.paused_until):
                self.early_calls += 1
            status, body = self._answer(method, params, files, now)
            self.calls.append(Call(now, method, params, files, status))
            return status, body

    def _error(self, status: int, description: str,
               parameters: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return status, body

    def _answer(self, method: str, params: dict[str, Any], files: dict[str, bytes],
                now: float) -> tuple[int, dict[str, Any]]:
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "Afisha",
                                                "username": self.username}}
        if self.script and (self.script[0].methods is None or method in self.script[0].methods):
            scripted = self.script.popleft()
            if scripted.status == 429 and scripted.parameters:
                if now >= self.paused_until:
                    self.paused_at = now
                self.paused_until = max(self.paused_until,
                                        now + float(scripted.parameters["retry_after"]))
            return self._error(scripted.status, scripted.description, scripted.parameters)
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            pending = [u for u in self.updates if u["update_id"] >= offset]
            return 200, {"ok": True, "result": pending}
        if method in ("setWebhook", "deleteWebhook"):
            self.webhook = params if method == "setWebhook" else None
            return 200, {"ok": True, "result": True}
        if method == "answerCallbackQuery":
            return 200, {"ok": True, "result": True}
        chat_id = int(params.get("chat_id", 0))
        if chat_id in self.migrated:
            return self._error(400, "Bad Request: group chat was upgraded to a supergroup chat",
                               {"migrate_to_chat_id": self.migrated[chat_id]})
        if chat_id in self.blocked:
            return self._error(403, self.blocked[chat_id])
        if method in SEND_METHODS:
            message = self._message(chat_id, params, photo=method == "sendPhoto")
            message["protect_content"] = str(params.get("protect_content")).lower() == "true"
            self.messages[(chat_id, message["message_id"])] = message
            return 200, {"ok": True, "result": message}
        if method in EDIT_METHODS:
            key = (chat_id, int(params.get("message_id", 0)))
            existing = self.messages.get(key)
            if existing is None:
                return self._error(400, "Bad Request: message to edit not found")
            changed = dict(existing)
            if method == "editMessageMedia":
                media = params.get("media") or {}
                changed["caption"] = media.get("caption", "")
                changed["photo"] = [{"file_id": f"f{key}-{len(self.calls)}",
                                     "file_unique_id": f"e{len(self.calls)}",
                                     "width": 640, "height": 360}]
            if method == "editMessageCaption":
                changed["caption"] = params.get("caption", "")
            if method == "editMessageText":
                changed["text"] = params.get("text", "")
            changed.pop("reply_markup", None)  # an edit without one removes the keyboard
            if (params.get("reply_markup") or {}).get("inline_keyboard"):
                changed["reply_markup"] = params["reply_markup"]
            if changed == existing and method != "editMessageMedia":
                return self._error(400, "Bad Request: message is not modified: specified new "
                                        "message content and reply markup are exactly the same")
            self.messages[key] = changed
            return 200, {"ok": True, "result": changed}
        return self._error(404, "Not Found")


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def create_app(fake: FakeTelegram) -> FastAPI:
    app = FastAPI()

    @app.get("/_calls")
    async def calls() -> list[list[Any]]:
        """What was called, for a double running in another process (the benchmark)."""
        return [[c.at, c.method, int(c.params.get("chat_id") or 0), c.answered]
                for c in list(fake.calls)]

    @app.post("/bot{token}/{method}")
    async def call(token: str, method: str, request: Request) -> JSONResponse:
        arrived = time.time()  # before the body is read: the moment the call reached us
        if token != fake.token:
            return JSONResponse({"ok": False, "error_code": 401,
                                 "description": "Unauthorized"}, status_code=401)
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        kind = request.headers.get("content-type", "")
        if kind.startswith("application/json"):
            params = await request.json()
        elif kind.startswith(("multipart/", "application/x-www-form-urlencoded")):
            form = await request.form()
            for name, value in form.multi_items():
                if hasattr(value, "read"):
                    files[name] = await value.read()
                else:
                    params[name] = _decode(value)
        if method == "getUpdates" and not fake.updates:
            await asyncio.sleep(min(float(params.get("timeout") or 0), 0.2))
        status, body = fake.answer(method, params, files, arrived)
        return JSONResponse(body, status_code=status)

    return app
