"""Migrations on the real PostgreSQL: every schema created, re-running changes nothing.

Partitions of the raw series (created by the analytics sweep, not by migrations) are left out
of the catalogue.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cluster.settings import SERVICES, Settings, schema_of
from storage import migrate
from storage.engine import create_engine
from tests.conftest import admin_sql, make_settings, with_database

CATALOGUE = text("""
    SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable
    FROM information_schema.columns c WHERE c.table_schema LIKE '%\\_service'
      AND NOT EXISTS (SELECT 1 FROM pg_class k WHERE k.relispartition
                      AND k.oid = to_regclass(quote_ident(c.table_schema) || '.'
                                              || quote_ident(c.table_name)))
    UNION ALL
    SELECT schemaname, tablename, indexname, indexdef, '' FROM pg_indexes i
    WHERE schemaname LIKE '%\\_service'
      AND NOT EXISTS (SELECT 1 FROM pg_class k WHERE k.relispartition
                      AND k.oid = to_regclass(quote_ident(i.schemaname) || '.'
                                              || quote_ident(i.tablename)))
    ORDER BY 1, 2, 3
""")


async def catalogue(settings: Settings) -> list[Any]:
    engine = create_async_engine(settings.database_url_for("user"))
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(CATALOGUE)).all())
    finally:
        await engine.dispose()


def test_every_service_schema_is_at_head(migrated_settings: Settings) -> None:
    for service in SERVICES:
        current = asyncio.run(migrate.current_revision(migrated_settings, service))
        assert current is not None
        assert current == migrate.head_revision(migrated_settings, service)
    schemas = {row[0] for row in asyncio.run(catalogue(migrated_settings))}
    assert schemas == {schema_of(s) for s in SERVICES}


def test_running_migrations_again_changes_nothing(migrated_settings: Settings) -> None:
    before = asyncio.run(catalogue(migrated_settings))
    migrate.upgrade(migrated_settings)
    migrate.upgrade(migrated_settings)
    assert asyncio.run(catalogue(migrated_settings)) == before


def test_concurrent_migrations_from_several_processes_apply_once(fresh_database: str) -> None:
    """Three processes migrate one empty database at once: no error, one result."""
    name = f"afisha_test_concurrent_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        settings = make_settings(database_url=with_database(fresh_database, name))
        with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(migrate.upgrade, [settings] * 3))
        reference = asyncio.run(catalogue(make_settings(database_url=fresh_database)))
        assert asyncio.run(catalogue(settings)) == reference
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_service_engine_sees_only_its_own_schema(migrated_settings: Settings) -> None:
    async def check(service: str) -> tuple[str, str]:
        engine = create_engine(migrated_settings, service)
        try:
            async with engine.connect() as conn:
                path = await conn.scalar(text("SHOW search_path"))
                outbox = await conn.scalar(text(
                    "SELECT relnamespace::regnamespace::text FROM pg_class "
                    "WHERE oid = to_regclass('outbox')"))
                return str(path), str(outbox)
        finally:
            await engine.dispose()

    for service in SERVICES:
        path, outbox = asyncio.run(check(service))
        assert path == schema_of(service)
        assert outbox == schema_of(service)
