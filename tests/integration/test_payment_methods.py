"""Saved payment methods with the sandbox provider on the real PostgreSQL: kept when a payment
made with ``save_payment_method`` succeeds, charged without a payer step, owner only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from cluster.settings import Settings
from messaging.outbox import UnitOfWork, outbox_for
from serve.common.errors import NotFound
from serve.payments import methods, service
from serve.payments.domain import Kind, Order
from serve.payments.providers import SandboxProvider
from storage.engine import create_engine, sessionmaker
from tests.integration.test_payment_service import checkout, deliver


@pytest.fixture
async def sessions(migrated_settings: Settings) -> AsyncIterator[Any]:
    engine = create_engine(migrated_settings, "payment", pool_size=5)
    yield sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def sandbox() -> SandboxProvider:
    return SandboxProvider("webhook-secret", "http://127.0.0.1:8080", tolerance_s=300)


def registration(user_id: str) -> service.Registration:
    return service.Registration(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()),
                                user_id, Order(total=1_200, currency="RUB"))


async def create(sessions: Any, sandbox: SandboxProvider, reg: service.Registration,
                 **options: Any) -> dict[str, Any]:
    async with UnitOfWork(sessions, "payment") as uow:
        return await service.create_payment(uow, sandbox, reg, Kind.FULL, **options)


async def test_a_kept_method_pays_the_next_ticket_in_one_step(sessions: Any,
                                                              sandbox: SandboxProvider) -> None:
    payer, stranger = str(uuid.uuid4()), str(uuid.uuid4())
    first = await create(sessions, sandbox, registration(payer), save_method=True)
    plain = await create(sessions, sandbox, registration(payer))
    for payment in (first, plain):
        for body in await checkout(sessions, sandbox, payment, "succeeded",
                                   save_method=payment is first):
            await deliver(sessions, sandbox, body)
    async with sessions() as session:
        kept = (await methods.listed(session, payer))["items"]
        assert await methods.listed(session, stranger) == {"items": [], "next_cursor": None}
    assert [(m["title"], m["type"], m["provider"]) for m in kept] == [
        ("Card *4444", "bank_card", "sandbox")]  # only the payment that asked keeps one

    second = await create(sessions, sandbox, registration(payer), method_id=kept[0]["id"])
    assert second["status"] == "completed" and second["confirmation_url"] is None
    assert second["captured"]["amount"] == 1_200
    outbox = outbox_for("payment")
    async with sessions() as session:
        completed = await session.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.type == "payment.completed", outbox.c.aggregate_id == second["id"]))
    assert completed == 1

    with pytest.raises(NotFound):  # another payer cannot charge or delete it
        await create(sessions, sandbox, registration(stranger), method_id=kept[0]["id"])
    async with sessions() as session, session.begin():
        with pytest.raises(NotFound):
            await methods.forget(session, stranger, kept[0]["id"])
    async with sessions() as session, session.begin():
        await methods.forget(session, payer, kept[0]["id"])
    async with sessions() as session:
        assert (await methods.listed(session, payer))["items"] == []
    with pytest.raises(NotFound):
        await create(sessions, sandbox, registration(payer), method_id=kept[0]["id"])
