"""``Idempotency-Key`` for POSTs that move money.

The same key with the same body returns the first response; with another body it is a 422;
while the first request is still running it is a 409. The key is claimed in its own committed
transaction, and the response is stored in the same transaction as the operation's effect, so a
crash leaves either nothing or both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from messaging.outbox import UnitOfWork
from serve.common.errors import Conflict, ProblemError, Unprocessable
from serve.common.problems import kind_of, render, status_of
from storage.payment import idempotency_keys

Operation = Callable[[UnitOfWork], Awaitable[dict[str, Any]]]


def fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _where(scope: str, key: str) -> Any:
    return and_(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)


async def run_once(sessions: async_sessionmaker[AsyncSession], new_uow: Callable[[], UnitOfWork],
                   scope: str, key: str | None, body: Any, operation: Operation
                   ) -> dict[str, Any]:
    """Run ``operation`` in a unit of work at most once per ``(scope, key)``; the response is
    stored in that unit of work."""
    if key is None:
        async with new_uow() as uow:
            return await operation(uow)
    replay = await _claim(sessions, scope, key, body)
    if replay is not None:
        return replay

    async def run() -> dict[str, Any]:
        async with new_uow() as uow:
            result = await operation(uow)
            await _store(uow.session, scope, key, result)
            return result

    return await _guarded(sessions, scope, key, run)


async def run_outside(sessions: async_sessionmaker[AsyncSession], scope: str, key: str | None,
                      body: Any, operation: Callable[[], Awaitable[dict[str, Any]]]
                      ) -> dict[str, Any]:
    """As ``run_once`` for an operation of several transactions that is itself safe to repeat
    (a refund: intent, provider call, settlement); its response is stored after it."""
    if key is None:
        return await operation()
    replay = await _claim(sessions, scope, key, body)
    if replay is not None:
        return replay

    async def run() -> dict[str, Any]:
        result = await operation()
        async with sessions() as session, session.begin():
            await _store(session, scope, key, result)
        return result

    return await _guarded(sessions, scope, key, run)


async def _claim(sessions: async_sessionmaker[AsyncSession], scope: str, key: str,
                 body: Any) -> dict[str, Any] | None:
    """Claim ``(scope, key)``; the stored answer (or its problem, raised) if it was claimed."""
    if not 0 < len(key) <= 200:
        raise Unprocessable("the Idempotency-Key header must be 1 to 200 characters")
    digest = fingerprint(body)
    async with sessions() as session, session.begin():
        claimed = await session.execute(
            pg_insert(idempotency_keys).values(scope=scope, key=key, request_hash=digest)
            .on_conflict_do_nothing().returning(idempotency_keys.c.key))
        if claimed.first() is None:
            row = (await session.execute(select(idempotency_keys).where(_where(scope, key))))\
                .mappings().one()
            return _replay(row, digest)
    return None


async def _store(session: AsyncSession, scope: str, key: str, result: dict[str, Any]) -> None:
    await session.execute(update(idempotency_keys).where(_where(scope, key))
                          .values(status_code=200, response=result))


async def _guarded(sessions: async_sessionmaker[AsyncSession], scope: str, key: str,
                   run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    try:
        return await run()
    except ProblemError as exc:
        async with sessions() as session, session.begin():
            await session.execute(update(idempotency_keys).where(_where(scope, key)).values(
                status_code=status_of(exc)[0], response={"problem": render(exc)}))
        raise
    except BaseException:
        async with sessions() as session, session.begin():
            await session.execute(delete(idempotency_keys).where(_where(scope, key)))
        raise


def _replay(row: Any, digest: str) -> dict[str, Any]:
    if row["request_hash"] != digest:
        raise Unprocessable("this Idempotency-Key was used with a different request body",
                            slug="idempotency-key-reused")
    if row["status_code"] is None:
        raise Conflict("a request with this Idempotency-Key is still being processed",
                       slug="idempotency-key-in-progress")
    response: dict[str, Any] = row["response"]
    if row["status_code"] != 200:
        problem = dict(response["problem"])
        cls = kind_of(problem["status"])
        slug = problem.pop("type").rsplit("/", 1)[-1]
        detail = problem.pop("detail")
        extensions = {k: v for k, v in problem.items() if k not in ("title", "status", "instance")}
        raise cls(detail, slug=slug, **extensions)
    return response
