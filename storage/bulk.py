"""Many rows in one statement over arrays (``unnest``), the same text for any number of rows.

SQLAlchemy's executemany on asyncpg sends one INSERT or UPDATE per row, and each is planned on
its own (``plan_cache_mode = force_custom_plan``, ``storage.engine``); a consumer applying a
batch of a few hundred messages paid that for every row. Here each column travels as one
array parameter: one statement, one plan, one round trip per batch. The statement text depends
only on the table and columns, so it is built once and SQLAlchemy's and asyncpg's caches keep
it. JSON columns travel as text and are cast back; rows are written in the order given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Column, Table, TextClause, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import JSON

_DIALECT = postgresql.dialect()


def _is_json(column: Column[Any]) -> bool:
    return isinstance(column.type, JSON)


def _array(column: Column[Any]) -> str:
    element = "TEXT" if _is_json(column) else column.type.compile(dialect=_DIALECT)
    return f"CAST(:{column.name} AS {element}[])"


def _value(column: Column[Any], alias: str) -> str:
    ref = f"{alias}.{column.name}"
    return f"CAST({ref} AS {column.type.compile(dialect=_DIALECT)})" if _is_json(column) else ref


def _unnest(columns: Sequence[Column[Any]], alias: str) -> str:
    names = ", ".join(c.name for c in columns)
    return (f"unnest({', '.join(_array(c) for c in columns)}) WITH ORDINALITY "
            f"AS {alias}({names}, ordinal)")


@cache
def insert(table: Table, columns: tuple[str, ...], conflict: str = "") -> TextClause:
    """``INSERT INTO table AS t (columns) SELECT … FROM unnest(…)`` in the rows' order, then
    ``conflict`` (e.g. ``ON CONFLICT DO NOTHING``, and a ``RETURNING`` clause if wanted; ``t``
    names the table, ``excluded`` the row)."""
    cols = [table.c[n] for n in columns]
    return text(f"INSERT INTO {table.fullname} AS t ({', '.join(columns)}) "
                f"SELECT {', '.join(_value(c, 'r') for c in cols)} FROM {_unnest(cols, 'r')} "
                f"ORDER BY r.ordinal {conflict}".rstrip())


@cache
def update(table: Table, key: str, columns: tuple[str, ...]) -> TextClause:
    """``UPDATE table SET columns = …`` for each row, found by ``key`` (one row per key)."""
    cols = [table.c[n] for n in (key, *columns)]
    sets = ", ".join(f"{c.name} = {_value(c, 'v')}" for c in cols[1:])
    return text(f"UPDATE {table.fullname} AS t SET {sets} FROM {_unnest(cols, 'v')} "
                f"WHERE t.{key} = v.{key}")


def params(table: Table, columns: Iterable[str],
           rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The rows as one list per column (JSON values dumped to text, missing keys as NULL)."""
    found: dict[str, list[Any]] = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        if _is_json(table.c[name]):
            values = [None if v is None else json.dumps(v) for v in values]
        found[name] = values
    return found
