"""``storage.bulk``: a batch's rows in one statement over arrays, on the real Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from cluster.settings import Settings
from storage import bulk
from storage.engine import create_engine, sessionmaker

metadata = MetaData(schema="bulk_test")
rows_table = Table(
    "rows", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("seq", BigInteger, server_default=text("nextval('bulk_test.seq')")),
    Column("name", Text),
    Column("count", Integer, nullable=False),
    Column("at", DateTime(timezone=True)),
    Column("data", JSONB),
)
COLUMNS = ("id", "name", "count", "at", "data")


async def test_rows_are_inserted_in_order_added_to_and_updated_by_key(
        migrated_settings: Settings) -> None:
    engine = create_engine(migrated_settings, "analytics")
    sessions = sessionmaker(engine)
    ids = [uuid.uuid4() for _ in range(3)]
    at = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    first: list[dict[str, Any]] = [
        {"id": ids[0], "name": "a", "count": 1, "at": at, "data": {"k": [1, "x"]}},
        {"id": ids[1], "name": None, "count": 2, "data": None},  # missing keys are NULL
        {"id": ids[2], "name": "c", "count": 3, "at": at, "data": {"é": None}}]
    try:
        async with sessions.begin() as s:
            await s.execute(text("DROP SCHEMA IF EXISTS bulk_test CASCADE"))
            await s.execute(text("CREATE SCHEMA bulk_test"))
            await s.execute(text("CREATE SEQUENCE bulk_test.seq"))
            await s.run_sync(lambda sync: metadata.create_all(sync.connection()))
            await s.execute(bulk.insert(rows_table, COLUMNS),
                            bulk.params(rows_table, COLUMNS, first))
            adding = bulk.insert(rows_table, ("id", "count"),
                                 "ON CONFLICT (id) DO UPDATE SET count = t.count + excluded.count")
            await s.execute(adding, bulk.params(rows_table, ("id", "count"), [
                {"id": ids[2], "count": 10}, {"id": uuid.uuid4(), "count": 7}]))
            await s.execute(bulk.update(rows_table, "id", ("name", "data")),
                            bulk.params(rows_table, ("id", "name", "data"), [
                                {"id": ids[1], "name": "b", "data": {"n": 2}}]))
        async with sessions() as s:
            found = (await s.execute(select(rows_table).order_by(rows_table.c.seq))).all()
        assert [r.id for r in found[:3]] == ids  # in the order given
        assert [(r.name, r.count, r.at, r.data) for r in found[:3]] == [
            ("a", 1, at, {"k": [1, "x"]}), ("b", 2, None, {"n": 2}), ("c", 13, at, {"é": None})]
        assert (found[3].count, found[3].name) == (7, None) and len(found) == 4
    finally:
        async with sessions.begin() as s:
            await s.execute(text("DROP SCHEMA IF EXISTS bulk_test CASCADE"))
        await engine.dispose()
