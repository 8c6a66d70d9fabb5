"""The embedded default: a real PostgreSQL in the data directory that keeps data across restarts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from cluster.embedded import EmbeddedPostgres
from storage import migrate
from storage.engine import create_engine
from tests.conftest import make_settings


async def _scalar(url: str, sql: str) -> object:
    engine = create_engine(make_settings(database_url=url), "event")
    try:
        async with engine.begin() as conn:
            return await conn.scalar(text(sql))
    finally:
        await engine.dispose()


def test_embedded_postgres_migrates_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path)
    url = server.start()
    try:
        migrate.upgrade(make_settings(database_url=url))
        asyncio.run(_scalar(url, """
            INSERT INTO outbox (message_id, type, aggregate_id, envelope)
            VALUES (gen_random_uuid(), 'event.created', 'e1', '{}') RETURNING id"""))
    finally:
        server.stop()

    again = EmbeddedPostgres(tmp_path)
    url = again.start()
    try:
        assert asyncio.run(_scalar(url, "SELECT count(*) FROM outbox")) == 1
        settings = make_settings(database_url=url)
        assert asyncio.run(migrate.current_revision(settings, "event")) \
            == migrate.head_revision(settings, "event")
    finally:
        again.stop()


def test_afisha_migrate_uses_embedded_postgres_when_no_database_is_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFISHA_")}
    env["AFISHA_DATA_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "cluster.cli", "migrate"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "migrations applied" in result.stdout
    assert (tmp_path / "postgres" / "PG_VERSION").exists()
