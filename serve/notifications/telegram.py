"""The Bot API through python-telegram-bot's ``Bot``, its errors turned into our verdicts.

``AFISHA_TELEGRAM_API_URL`` is the server root: methods are called at
``<root>/bot<token>/<method>``, so a local Bot API server or the tests' double works like
Telegram. Photos are uploaded as files (multipart).
"""

from __future__ import annotations

import asyncio
import os
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

# python-telegram-bot 22 warns that durations become timedelta; we take them as timedelta now.
os.environ.setdefault("PTB_TIMEDELTA", "1")

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaPhoto,
    Message,
)
from telegram import error as tg
from telegram.constants import ParseMode
from telegram.request import HTTPXRequest

from serve.notifications.domain import Verdict, classify


@dataclass(frozen=True)
class Failure(Exception):
    """An unsuccessful Bot API call, classified."""

    verdict: Verdict
    description: str
    retry_after: float = 0.0
    migrate_to_chat_id: int | None = None

    def __str__(self) -> str:
        return f"{self.verdict}: {self.description}"


def failure(exc: Exception) -> Failure:
    if isinstance(exc, tg.RetryAfter):
        with warnings.catch_warnings():  # v22 warns that it becomes a timedelta
            warnings.simplefilter("ignore")
            after: Any = exc.retry_after
        seconds = after.total_seconds() if isinstance(after, timedelta) else float(after)
        return Failure("retry_after", str(exc), retry_after=seconds)
    if isinstance(exc, tg.ChatMigrated):
        return Failure("migrated", str(exc), migrate_to_chat_id=int(exc.new_chat_id))
    if isinstance(exc, tg.Forbidden):
        return Failure(classify(403, exc.message), exc.message)
    if isinstance(exc, tg.BadRequest):
        return Failure(classify(400, exc.message), exc.message)
    if isinstance(exc, tg.TimedOut | tg.NetworkError):
        return Failure("retry", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, tg.TelegramError):
        return Failure("failed", str(exc))
    return Failure("retry", f"{type(exc).__name__}: {exc}")


def keyboard(buttons: list[list[dict[str, str]]] | None) -> InlineKeyboardMarkup | None:
    """The inline keyboard; None (the parameter left out) without buttons: an edit without
    ``reply_markup`` removes the message's keyboard."""
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(
        b["text"], url=b.get("url"), callback_data=b.get("callback_data")) for b in row]
        for row in buttons])


class BotGateway:
    def __init__(self, token: str, api_root: str, *, timeout: float = 10.0,
                 pool_size: int = 32) -> None:
        root = api_root.rstrip("/")
        request = HTTPXRequest(connection_pool_size=pool_size, read_timeout=timeout,
                               write_timeout=timeout, connect_timeout=timeout)
        poll = HTTPXRequest(connection_pool_size=2, read_timeout=timeout + 30)
        self.bot = Bot(token, base_url=f"{root}/bot", base_file_url=f"{root}/file/bot",
                       request=request, get_updates_request=poll)
        self._started = False
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        if self._started:
            return
        async with self._starting:
            if not self._started:
                await self.bot.initialize()
                self._started = True

    async def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            await self.start()
            return await getattr(self.bot, method)(**kwargs)
        except Exception as exc:
            raise failure(exc) from exc

    async def me(self) -> dict[str, Any]:
        user = await self._call("get_me")
        return {"id": user.id, "username": user.username}

    async def send_text(self, chat_id: int, text: str,
                        buttons: list[list[dict[str, str]]] | None) -> int:
        message: Message = await self._call(
            "send_message", chat_id=chat_id, text=text, parse_mode=ParseMode.HTML,
            reply_markup=keyboard(buttons))
        return message.message_id

    async def send_photo(self, chat_id: int, photo: bytes, caption: str,
                         buttons: list[list[dict[str, str]]] | None, protect: bool) -> int:
        message: Message = await self._call(
            "send_photo", chat_id=chat_id, photo=InputFile(photo, filename="ticket.png"),
            caption=caption, parse_mode=ParseMode.HTML, reply_markup=keyboard(buttons),
            protect_content=protect)
        return message.message_id

    async def edit_photo(self, chat_id: int, message_id: int, photo: bytes, caption: str,
                         buttons: list[list[dict[str, str]]] | None) -> None:
        media = InputMediaPhoto(InputFile(photo, filename="ticket.png", attach=True),
                                caption=caption, parse_mode=ParseMode.HTML)
        await self._call("edit_message_media", chat_id=chat_id, message_id=message_id,
                         media=media, reply_markup=keyboard(buttons))

    async def edit_caption(self, chat_id: int, message_id: int, caption: str,
                           buttons: list[list[dict[str, str]]] | None) -> None:
        await self._call("edit_message_caption", chat_id=chat_id, message_id=message_id,
                         caption=caption, parse_mode=ParseMode.HTML,
                         reply_markup=keyboard(buttons))

    async def answer_callback(self, callback_id: str, text: str) -> None:
        await self._call("answer_callback_query", callback_query_id=callback_id, text=text[:200])

    async def get_updates(self, offset: int | None, wait_seconds: int) -> list[dict[str, Any]]:
        updates = await self._call("get_updates", offset=offset, timeout=wait_seconds,
                                   allowed_updates=["message", "callback_query",
                                                    "my_chat_member"])
        return [u.to_dict() for u in updates]

    async def set_webhook(self, url: str, secret: str) -> None:
        await self._call("set_webhook", url=url, secret_token=secret,
                         allowed_updates=["message", "callback_query", "my_chat_member"])

    async def close(self) -> None:
        if self._started:
            await self.bot.shutdown()
