"""Async engines, one per service, created inside the replica that uses them (never pickled).

A service's engine sets ``search_path`` to the service's own schema only, and every table is
declared under ``MetaData(schema=...)`` of that schema, so a service reaches only its own data.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from cluster.settings import Settings, schema_of


def create_engine(settings: Settings, service: str, *, pool_size: int | None = None,
                  max_overflow: int | None = None) -> AsyncEngine:
    schema = schema_of(service)
    url = make_url(settings.database_url_for(service))
    return create_async_engine(
        url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=settings.database_pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "server_settings": {"search_path": schema, "application_name": f"afisha-{service}"},
            "command_timeout": 30,
        },
    )


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


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
