"""Keyset pagination, the one way every list pages: ``{items, next_cursor}``.

A list is ordered by ``(sort column, key column)`` (a timestamp, then a unique id). The cursor
is opaque to clients: URL-safe base64 of ``<ISO timestamp>|<key>`` of the last row of the page.
A cursor this API did not hand out is a 422 ``invalid-cursor`` problem.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Uuid, literal, tuple_
from sqlalchemy.sql.elements import ColumnElement

from serve.common.errors import Unprocessable


class InvalidCursor(Unprocessable):
    slug = "invalid-cursor"


def encode(sort_value: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{sort_value.isoformat()}|{key}".encode()).decode()


def decode(cursor: str) -> tuple[datetime, str]:
    try:
        sort_value, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(sort_value), key
    except (ValueError, UnicodeError) as exc:
        raise InvalidCursor("the cursor is not one this API returned") from exc


def keyset(query: Select[Any], sort: ColumnElement[Any], key: ColumnElement[Any],
           cursor: str | None, limit: int) -> Select[Any]:
    """``query`` from after ``cursor``, in keyset order, one row more than the page (so
    ``split`` knows whether another page follows)."""
    if cursor:
        after, after_key = decode(cursor)
        query = query.where(tuple_(sort, key) > tuple_(literal(after, sort.type),
                                                       literal(_key(key, after_key), key.type)))
    return query.order_by(sort, key).limit(max(1, limit) + 1)


def _key(column: ColumnElement[Any], value: str) -> Any:
    """The cursor's key as the key column takes it (a UUID column only takes a UUID)."""
    if not isinstance(column.type, Uuid):
        return value
    try:
        parsed = uuid.UUID(value)
    except ValueError as exc:
        raise InvalidCursor("the cursor is not one this API returned") from exc
    return parsed if column.type.as_uuid else str(parsed)


def split(rows: Sequence[Any], limit: int, sort: str, key: str
          ) -> tuple[Sequence[Any], str | None]:
    """The page's rows and the cursor of the next page (None on the last page)."""
    limit = max(1, limit)
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    value = last if isinstance(last, Mapping) else last._mapping
    return rows[:limit], encode(value[sort], str(value[key]))
