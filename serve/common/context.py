"""The request context carried from the gateway into every service call and log line."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

CORRELATION_HEADER = "X-Correlation-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

correlation_id_var: ContextVar[str] = ContextVar("correlation_id", default="-")


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    roles: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass(frozen=True, slots=True)
class RequestContext:
    correlation_id: str = field(default_factory=lambda: new_correlation_id())
    identity: Identity | None = None
    client_ip: str | None = None


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def accept_correlation_id(header_value: str | None) -> str:
    """Keep a caller's correlation id when it is sane; otherwise make a new one."""
    if header_value and _VALID_ID.match(header_value):
        return header_value
    return new_correlation_id()


@contextmanager
def bound(ctx: RequestContext | str) -> Iterator[None]:
    """Make ``ctx``'s correlation id the current one for logging within the block."""
    token = correlation_id_var.set(ctx if isinstance(ctx, str) else ctx.correlation_id)
    try:
        yield
    finally:
        correlation_id_var.reset(token)
