"""The unit of work writes state and events in one transaction, or neither."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from cluster.settings import Settings
from messaging.catalogue import InvalidPayload
from messaging.outbox import UnitOfWork, outbox_for
from serve.common.context import RequestContext
from storage.engine import create_engine, sessionmaker

EVENT = {"user_id": "u1", "changed": ["display_name"]}


async def count(sessions, correlation_id: str) -> int:  # type: ignore[no-untyped-def]
    outbox = outbox_for("user")
    async with sessions() as session:
        return int(await session.scalar(
            select(func.count()).select_from(outbox)
            .where(outbox.c.envelope["correlation_id"].astext == correlation_id)))


async def test_commit_writes_the_events_and_rollback_writes_none(
        migrated_settings: Settings) -> None:
    engine = create_engine(migrated_settings, "user")
    sessions = sessionmaker(engine)
    woken: list[bool] = []
    try:
        async with UnitOfWork(sessions, "user", RequestContext(correlation_id="ok-1"),
                              after_commit=lambda: woken.append(True)) as uow:
            await uow.session.execute(text("SELECT 1"))
            envelope = uow.publish("user.updated", EVENT, aggregate_id="u1")
        assert await count(sessions, "ok-1") == 1
        assert woken == [True]
        assert envelope.producer == "user" and envelope.correlation_id == "ok-1"

        with pytest.raises(RuntimeError):
            async with UnitOfWork(sessions, "user", RequestContext(correlation_id="ko-1")) as uow:
                uow.publish("user.updated", EVENT, aggregate_id="u1")
                raise RuntimeError("the state change failed")
        assert await count(sessions, "ko-1") == 0

        with pytest.raises(InvalidPayload):
            async with UnitOfWork(sessions, "user", RequestContext(correlation_id="bad")) as uow:
                uow.publish("user.updated", {"user_id": "u1"}, aggregate_id="u1")
        assert await count(sessions, "bad") == 0
    finally:
        await engine.dispose()
