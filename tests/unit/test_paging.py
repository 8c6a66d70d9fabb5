"""The one keyset pagination (serve.common.paging): cursor format, pages, bad cursors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, DateTime, MetaData, Table, select
from sqlalchemy.dialects.postgresql import UUID

from serve.common import paging
from serve.common.problems import status_of

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
items = Table("items", MetaData(), Column("id", UUID(as_uuid=True), primary_key=True),
              Column("created_at", DateTime(timezone=True)))


def test_pages_end_with_the_cursor_of_their_last_row() -> None:
    rows = [{"id": f"r{i}", "created_at": T0 + timedelta(seconds=i)} for i in range(3)]
    page, cursor = paging.split(rows, 2, "created_at", "id")
    assert [r["id"] for r in page] == ["r0", "r1"]
    assert cursor is not None
    assert paging.decode(cursor) == (T0 + timedelta(seconds=1), "r1")
    assert paging.split(rows[:2], 2, "created_at", "id") == (rows[:2], None)


@pytest.mark.parametrize("cursor", ["!!!", "bm8tc2VwYXJhdG9y", paging.encode(T0, "x")[:-4]])
def test_a_cursor_this_api_did_not_hand_out_is_a_422_invalid_cursor(cursor: str) -> None:
    with pytest.raises(paging.InvalidCursor) as caught:
        paging.decode(cursor)
    assert (status_of(caught.value)[0], caught.value.slug) == (422, "invalid-cursor")


def test_a_cursor_whose_key_does_not_fit_the_key_column_is_invalid() -> None:
    query = select(items)
    with pytest.raises(paging.InvalidCursor):
        paging.keyset(query, items.c.created_at, items.c.id, paging.encode(T0, "nope"), 10)
    key = uuid.uuid4()
    sql = str(paging.keyset(query, items.c.created_at, items.c.id,
                            paging.encode(T0, str(key)), 10))
    assert "ORDER BY items.created_at, items.id" in sql and "LIMIT" in sql
