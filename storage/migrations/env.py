"""Alembic environment shared by the six services.

Each service has its own version chain (``storage/migrations/<service>/versions``) and its own
version table inside its own schema, so a service can live on a dedicated database. Runs take a
per-schema advisory lock, so concurrent ``afisha migrate`` calls apply each revision once.
"""

from __future__ import annotations

import asyncio
import zlib

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
service: str = config.attributes["service"]
schema: str = config.attributes["schema"]
url: str = config.attributes["url"]
LOCK_KEY = zlib.crc32(f"afisha-migrate:{schema}".encode())


def _run(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations(schema=schema)


async def _online() -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `afisha migrate`")
asyncio.run(_online())
