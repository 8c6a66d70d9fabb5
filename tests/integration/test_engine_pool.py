"""The services' connection pools against the real Postgres: a checkout sends nothing to the
server, a read session sends its statements only, and a pooled connection the server ended is
replaced before anyone uses it."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import text

from cluster.settings import Settings
from messaging.relay import asyncpg_dsn
from storage.engine import create_engine, read_sessionmaker, sessionmaker


async def test_a_checkout_sends_only_the_sessions_own_statements(
        migrated_settings: Settings) -> None:
    engine = create_engine(migrated_settings, "event", pool_size=1, max_overflow=0)
    sent: list[str] = []
    try:
        async with engine.connect() as conn:  # the pool's one connection, now made
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            raw.add_query_logger(lambda record: sent.append(record.query))
        async with sessionmaker(engine)() as session:
            assert await session.scalar(text("SELECT 41 + 1")) == 42
        # The session's own transaction only. (Prepared statements are not logged; a ping
        # would show as a transaction of its own before it.)
        assert sent == ["BEGIN;", "ROLLBACK;"]
    finally:
        await engine.dispose()


async def test_a_read_session_sends_no_transaction_and_leaves_none_behind(
        migrated_settings: Settings) -> None:
    engine = create_engine(migrated_settings, "event", pool_size=1, max_overflow=0)
    sent: list[str] = []
    try:
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            raw.add_query_logger(lambda record: sent.append(record.query))
        xact = text("SELECT pg_current_xact_id()")
        async with read_sessionmaker(engine)() as session:
            first, second = await session.scalar(xact), await session.scalar(xact)
        assert first != second  # each statement was a transaction of its own
        assert sent == []  # and the session sent no BEGIN or ROLLBACK
        async with sessionmaker(engine)() as session:  # the same connection, transactional again
            first, second = await session.scalar(xact), await session.scalar(xact)
        assert first == second
        # SQLAlchemy names the isolation level it restored (Postgres' default).
        assert sent == ["BEGIN ISOLATION LEVEL READ COMMITTED;", "ROLLBACK;"]
    finally:
        await engine.dispose()


async def test_a_pooled_connection_the_server_ended_is_replaced_at_checkout(
        migrated_settings: Settings) -> None:
    engine = create_engine(migrated_settings, "event", pool_size=1, max_overflow=0)
    admin = await asyncpg.connect(asyncpg_dsn(migrated_settings.database_url_for("event")))
    try:
        async with engine.connect() as conn:
            ended = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", ended)
        for _ in range(100):  # the pooled connection sees its socket close
            if not await admin.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", ended):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        async with sessionmaker(engine)() as session:
            now_on = await session.scalar(text("SELECT pg_backend_pid()"))
        assert now_on != ended
    finally:
        await admin.close()
        await engine.dispose()
