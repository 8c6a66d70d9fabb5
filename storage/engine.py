"""Async engines, one per service, created inside the replica that uses them (never pickled).

A service's engine sets ``search_path`` to the service's own schema only, and every table is
declared under ``MetaData(schema=...)`` of that schema, so a service reaches only its own data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from cluster.settings import Settings, schema_of

# Every statement of the services' engines is planned with the values it runs with. Our tables
# start empty and grow fast in a sale; a prepared statement's generic plan, made while a table
# was nearly empty (a sequential scan), stayed cached on its connection until an ANALYZE
# invalidated it, and under sale load autoanalyze lagged for minutes. Measured on an open-loop
# flash sale at 300/s (four 12 s rounds): the analytics single-row UPDATE by primary key took
# 0.4 -> 3.0 ms a call and the notification sender's due query 9 -> 59 ms, Postgres 0.35 -> 0.51
# cores; planned each time, 0.03-0.06 ms and 1.6 ms, Postgres 0.29-0.31 cores throughout. The
# inventory hosts' group commit keeps its prepared plan: planned at every batch it cost 2-3x.
PLANNING = {"plan_cache_mode": "force_custom_plan"}


def create_engine(settings: Settings, service: str, *, pool_size: int | None = None,
                  max_overflow: int | None = None) -> AsyncEngine:
    schema = schema_of(service)
    url = make_url(settings.database_url_for(service))
    engine = create_async_engine(
        url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=settings.database_pool_size if max_overflow is None else max_overflow,
        pool_recycle=1800,
        connect_args={
            "server_settings": {"search_path": schema, "application_name": f"afisha-{service}",
                                **PLANNING},
            "command_timeout": 30,
        },
    )
    event.listen(engine.sync_engine, "checkout", refuse_closed)
    return engine


def refuse_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout: a connection the server has closed (restarted, terminated the backend)
    is replaced before use. asyncpg notices a closed socket by itself, so this costs no round
    trip, where SQLAlchemy's ``pool_pre_ping`` sent three (BEGIN, a ping, ROLLBACK) for every
    checkout of every session. A connection that breaks unnoticed fails its statement instead:
    SQLAlchemy then replaces every connection of the pool."""
    if dbapi_connection.driver_connection.is_closed():  # asyncpg's, under the adapter
        raise sa_exc.DisconnectionError("the database closed this pooled connection")


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    """Sessions for reads that need no transaction: each statement stands alone (autocommit),
    so a session sends its statements and nothing else, where a transactional one adds a BEGIN
    and a ROLLBACK round trip. Under READ COMMITTED each statement has a snapshot of its own
    either way. The connection returns to the pool transactional again."""
    return async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"),
                              expire_on_commit=False)


async def ping(engine: AsyncEngine, schema: str) -> None:
    """Raise unless the database answers and the service's schema exists."""
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"), {"s": schema}
        )
    if found is None:
        raise LookupError(f"schema {schema} does not exist: run `afisha migrate`")


# SQLSTATE of a server that refuses clients: too_many_connections, cannot_connect_now.
OVERLOAD_SQLSTATES = frozenset({"53300", "57P03"})


def _sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", None) if isinstance(error, sa_exc.DBAPIError) else error
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(code) if code else None


def is_bad_value(error: BaseException) -> bool:
    """The database refused a value of the input (SQLSTATE class 22, data exception: a NUL
    character in text, a malformed uuid or number, a value out of range); nothing was written."""
    code = _sqlstate(error)
    return code is not None and code.startswith("22")


def is_overload(error: BaseException) -> bool:
    """The database had no connection to give (the pool timed out waiting, or the server has
    reached max_connections): a condition to retry later, not a bug."""
    if isinstance(error, sa_exc.TimeoutError):
        return True
    orig = getattr(error, "orig", None) if isinstance(error, sa_exc.DBAPIError) else error
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code in OVERLOAD_SQLSTATES
