"""Message templates: Jinja2 in a sandbox, HTML parse mode, every value escaped.

A template is rendered with ``autoescape`` on, so a display name or an event title with
``<b>`` or ``{{ }}`` arrives as text. The ``SandboxedEnvironment`` refuses attribute access to
Python internals (``__class__``, ``__globals__``...), and a template that fails to render is
refused when it is saved (422 ``invalid-template``), never at sending time.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from serve.common.errors import Unprocessable

CAPTION_LIMIT = 1024
TEXT_LIMIT = 4096

_env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                            lstrip_blocks=True)


def money(minor: Any, currency: Any = "RUB") -> str:
    try:
        value = int(minor)
    except (TypeError, ValueError):
        return str(minor)
    sign = "-" if value < 0 else ""
    whole, cents = divmod(abs(value), 100)
    return f"{sign}{whole:,}.{cents:02d} {currency}".replace(",", " ")


_env.filters["money"] = money

DEFAULTS: dict[str, dict[str, str]] = {
    "welcome": {
        "ru": "Привет, <b>{{ name }}</b>! Здесь будут ваши билеты и напоминания Afisha.",
        "en": "Hi, <b>{{ name }}</b>! Your Afisha tickets and reminders will live here.",
    },
    "ticket": {
        "ru": "<b>{{ title }}</b>\n{{ quantity }} x билет\n"
              "{% if status == 'pending_payment' %}"
              "Ожидает оплаты: {{ amount|money(currency) }}"
              "{% if expires_at %}\nОплатить до {{ expires_at }}{% endif %}"  # noqa: RUF001
              "{% elif status == 'confirmed' %}Билет подтверждён. Покажите QR-код на входе."
              "{% elif status == 'checked_in' %}Вход отмечен. Хорошего вечера!"
              "{% elif status == 'expired' %}Бронь истекла."
              "{% elif status == 'event_cancelled' %}Событие отменено."
              "{% else %}Регистрация отменена.{% endif %}",
        "en": "<b>{{ title }}</b>\n{{ quantity }} x ticket\n"
              "{% if status == 'pending_payment' %}Awaiting payment: {{ amount|money(currency) }}"
              "{% if expires_at %}\nPay by {{ expires_at }}{% endif %}"
              "{% elif status == 'confirmed' %}Confirmed. Show the QR code at the door."
              "{% elif status == 'checked_in' %}Checked in. Enjoy!"
              "{% elif status == 'expired' %}The reservation expired."
              "{% elif status == 'event_cancelled' %}The event is cancelled."
              "{% else %}The registration is cancelled.{% endif %}",
    },
    "receipt": {
        "ru": "Оплата получена: {{ amount|money(currency) }}.\n<b>{{ title }}</b>",
        "en": "Payment received: {{ amount|money(currency) }}.\n<b>{{ title }}</b>",
    },
    "refund": {
        "ru": "Возврат {{ amount|money(currency) }} оформлен.\n<b>{{ title }}</b>",
        "en": "A refund of {{ amount|money(currency) }} is on its way.\n<b>{{ title }}</b>",
    },
    "cancellation": {
        "ru": "Событие <b>{{ title }}</b> ({{ starts_at }}) отменено. "
              "Если вы платили, деньги вернутся автоматически.",
        "en": "<b>{{ title }}</b> ({{ starts_at }}) is cancelled. "
              "Any payment is refunded automatically.",
    },
    "reminder": {
        "ru": "Напоминание: <b>{{ title }}</b> начнётся {{ starts_at }}.",
        "en": "Reminder: <b>{{ title }}</b> starts at {{ starts_at }}.",
    },
    "expiry": {
        "ru": "Бронь на <b>{{ title }}</b> истекла: места освобождены.",
        "en": "Your reservation for <b>{{ title }}</b> expired and the seats were released.",
    },
    "waitlist_offer": {
        "ru": "Освободилось место на <b>{{ title }}</b>! Оплатите до {{ expires_at }}.",
        "en": "A seat opened up for <b>{{ title }}</b>! Pay by {{ expires_at }}.",
    },
    "announcement": {
        "ru": "{{ text }}",
        "en": "{{ text }}",
    },
}

SAMPLE: dict[str, Any] = {
    "name": "Анна <b>&</b>", "title": "Концерт {{ x }}", "starts_at": "2030-01-01T19:00:00+03:00",
    "quantity": 2, "status": "pending_payment", "amount": 150000, "currency": "RUB",
    "expires_at": "2030-01-01T18:00:00+03:00", "text": "Текст <i>объявления</i>",
}


@lru_cache(maxsize=512)
def _compiled(body: str) -> Template:
    """A template's compiled form, kept by its text: compiling costs about a millisecond, more
    than rendering, and every message of a kind shares one text. A text that does not compile
    raises each time (failures are not kept)."""
    return _env.from_string(body)


def render(body: str, context: dict[str, Any]) -> str:
    """The HTML text of a template; ``Unprocessable`` (``invalid-template``) when it fails."""
    try:
        return str(_compiled(body).render(**context))
    except TemplateError as exc:  # SecurityError (sandbox), UndefinedError, syntax errors
        raise Unprocessable(f"the template does not render: {type(exc).__name__}: {exc}",
                            slug="invalid-template") from exc


def check(key: str, body: str) -> str:
    """Render a new template against sample data before it is saved; the sample's text."""
    if key not in DEFAULTS:
        raise Unprocessable(f"unknown template {key!r}", slug="invalid-template")
    text = render(body, SAMPLE)
    limit = CAPTION_LIMIT if key == "ticket" else TEXT_LIMIT
    if not text.strip() or len(text) > limit:
        raise Unprocessable(f"the rendered template must be 1-{limit} characters",
                            slug="invalid-template")
    return text
