"""Apply each service's Alembic chain to its database; safe to run any number of times."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from cluster.settings import SERVICES, Settings, schema_of

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(settings: Settings, service: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / service / "versions"))
    cfg.attributes.update(
        service=service, schema=schema_of(service), url=settings.database_url_for(service)
    )
    return cfg


def head_revision(settings: Settings, service: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(settings, service)).get_current_head()


def upgrade(
    settings: Settings,
    services: Iterable[str] = SERVICES,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Bring every service's schema to its head revision (blocking; call from sync code)."""
    for service in services:
        if progress:
            progress(service)
        command.upgrade(alembic_config(settings, service), "head")


async def current_revision(settings: Settings, service: str) -> str | None:
    schema = schema_of(service)
    engine = create_async_engine(settings.database_url_for(service), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(
                text("SELECT to_regclass(:t)"), {"t": f"{schema}.alembic_version"}
            )
            if exists is None:
                return None
            return await conn.run_sync(
                lambda c: MigrationContext.configure(
                    c, opts={"version_table_schema": schema}
                ).get_current_revision()
            )
    finally:
        await engine.dispose()
