"""Keyset pagination over ``(created_at, key)``: lists answer ``{items, next_cursor}``."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, literal, tuple_
from sqlalchemy.sql.elements import ColumnElement

from serve.common.errors import BadRequest

MAX_LIMIT = 200


def encode(created_at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode()


def decode(cursor: str) -> tuple[datetime, str]:
    try:
        created, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), key
    except (ValueError, UnicodeError) as exc:
        raise BadRequest("the cursor is not valid", slug="invalid-cursor") from exc


def keyset(query: Select[Any], created: ColumnElement[Any], key: ColumnElement[Any],
           cursor: str | None, limit: int) -> Select[Any]:
    if cursor:
        after, after_key = decode(cursor)
        query = query.where(tuple_(created, key) > tuple_(literal(after, created.type),
                                                          literal(after_key, key.type)))
    return query.order_by(created, key).limit(max(1, min(limit, MAX_LIMIT)) + 1)


def split(rows: Sequence[Any], limit: int, key: str) -> tuple[Sequence[Any], str | None]:
    """The page's rows and the cursor of the next page (None on the last page)."""
    limit = max(1, min(limit, MAX_LIMIT))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode(last.created_at, str(getattr(last, key)))
