"""Tables and migrations agree: Alembic's autogenerate finds nothing to change in any schema.

The ORM tables (``storage/<svc>.py`` and the messaging tables of ``storage.common``) are
compared with a database migrated from scratch, one schema per service, columns, types,
nullability, server defaults, indexes, unique and foreign keys included.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from cluster.settings import SERVICES, Settings, schema_of
from storage.analytics import is_partition
from storage.common import dead_letter_table, inbox_table, outbox_table, service_metadata


def declared_tables(service: str) -> MetaData:
    """Every table the code declares in a service's schema, in one MetaData."""
    metadata = service_metadata(service)
    try:
        module = importlib.import_module(f"storage.{service}")
    except ModuleNotFoundError:
        module = None
    if module is not None:
        for table in module.metadata.tables.values():
            table.to_metadata(metadata)
    for build in (outbox_table, inbox_table, dead_letter_table):
        probe = build(service_metadata(service))
        if probe.key not in metadata.tables:
            probe.to_metadata(metadata)
    return metadata


def differences(connection: Connection, service: str) -> list[Any]:
    schema = schema_of(service)

    def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
        if type_ == "schema":
            return name == schema
        # Monthly partitions of the raw series are made by a sweep, not declared.
        return not (type_ == "table" and is_partition(name))

    context = MigrationContext.configure(connection, opts={
        "include_schemas": True, "include_name": include_name, "version_table_schema": schema,
        "compare_type": True, "compare_server_default": True})
    return list(compare_metadata(context, declared_tables(service)))


async def drift(settings: Settings, service: str) -> list[Any]:
    engine = create_async_engine(settings.database_url_for(service))
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(differences, service)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", SERVICES)
def test_tables_match_the_migrated_schema(migrated_settings: Settings, service: str) -> None:
    assert asyncio.run(drift(migrated_settings, service)) == []
