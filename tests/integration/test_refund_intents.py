"""Refunds reach the provider once per cause across failures, crashes and redeliveries
(real PostgreSQL; the provider is a double that records every refund it is asked for, keyed by
its idempotence key, as YooKassa does)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from cluster.settings import Settings
from messaging.outbox import UnitOfWork, outbox_for
from serve.common.errors import BadRequest, ServiceUnavailable
from serve.payments import refunds, service
from serve.payments.domain import Order
from serve.payments.providers import ProviderRefund, SandboxProvider
from storage.engine import create_engine, sessionmaker
from storage.payment import refunds as refunds_table
from tests.integration.test_payment_service import paid


class RecordingProvider(SandboxProvider):
    """The sandbox, whose refunds are kept per idempotence key like a real provider's: a repeat
    of a key returns the refund made for it. ``failing`` payments' calls raise (an unreachable
    provider); ``refusing`` ones are declined."""

    def __init__(self) -> None:
        super().__init__("webhook-secret", "http://127.0.0.1:8080", tolerance_s=300)
        self.made: dict[str, tuple[str, int]] = {}
        self.calls: list[str] = []
        self.failing: set[str] = set()
        self.refusing: set[str] = set()

    async def refund(self, refund_id: str, provider_payment_id: str, amount: int,
                     currency: str) -> ProviderRefund:
        self.calls.append(refund_id)
        if provider_payment_id in self.failing:
            raise ConnectionError("provider unreachable")
        if provider_payment_id in self.refusing:
            raise BadRequest("the provider declined the refund", slug="refund-declined")
        self.made.setdefault(refund_id, (provider_payment_id, amount))
        return ProviderRefund(provider_refund_id=f"rf_{refund_id}", succeeded=True)

    def refunded(self, provider_payment_id: str) -> int:
        return sum(a for p, a in self.made.values() if p == provider_payment_id)


@pytest.fixture
async def sessions(migrated_settings: Settings) -> AsyncIterator[Any]:
    engine = create_engine(migrated_settings, "payment", pool_size=10)
    yield sessionmaker(engine)
    await engine.dispose()


async def provider_id(sessions: Any, payment_id: str) -> str:
    async with sessions() as session:
        return str((await service.load(session, payment_id))["provider_payment_id"])


async def published(sessions: Any, payment_id: str) -> int:
    outbox = outbox_for("payment")
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.type == "payment.refunded", outbox.c.aggregate_id == payment_id)))


async def test_a_cancelled_event_refunds_each_payment_once_across_a_failure_and_redelivery(
        sessions: Any) -> None:
    provider = RecordingProvider()
    event_id = str(uuid.uuid4())
    regs = [service.Registration(str(uuid.uuid4()), event_id, str(uuid.uuid4()),
                                 str(uuid.uuid4()), Order(total=700, currency="RUB"))
            for _ in range(3)]
    ids = [await paid(sessions, provider, reg) for reg in regs]
    pids = [await provider_id(sessions, pid) for pid in ids]
    provider.failing.add(pids[1])

    async def cancelled() -> int:  # the consumer's handler, in its inbox transaction
        async with UnitOfWork(sessions, "payment") as uow:
            return await service.refund_event(uow, event_id)

    assert await cancelled() == 3
    assert await refunds.resume(sessions, {"sandbox": provider}) == (2, 1)
    assert await cancelled() == 0  # redelivered after the partial failure: nothing new
    provider.failing.clear()
    assert await refunds.resume(sessions, {"sandbox": provider}) == (1, 0)
    assert await refunds.resume(sessions, {"sandbox": provider}) == (0, 0)

    assert [provider.refunded(p) for p in pids] == [700, 700, 700]
    assert len(provider.made) == 3  # the retried payment reused its key
    assert provider.calls.count(provider.calls[1]) == 2
    for pid in ids:
        state = service.view(await _load(sessions, pid))
        assert (state["status"], state["refunded"]["amount"]) == ("refunded", 700)
        assert await published(sessions, pid) == 1


async def test_a_crash_after_the_provider_call_is_settled_once_on_resume(sessions: Any) -> None:
    provider = RecordingProvider()
    reg = service.Registration(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()),
                               str(uuid.uuid4()), Order(total=900, currency="RUB"))
    payment_id = await paid(sessions, provider, reg)
    async with sessions() as session, session.begin():
        intent, created = await refunds.request(session, uuid.UUID(payment_id), 400, "test",
                                                "api:key-1")
    assert created
    # The provider refunds, then the process dies before the settlement commits.
    await provider.refund(str(intent["id"]), await provider_id(sessions, payment_id), 400, "RUB")
    again = await service.refund(sessions, {"sandbox": provider}, payment_id, 400, "test",
                                 "api:key-1")  # the client retries with the same key
    assert again["id"] == str(intent["id"]) and again["status"] == "succeeded"
    assert await refunds.resume(sessions, {"sandbox": provider}) == (0, 0)
    assert list(provider.made) == [str(intent["id"])]
    state = service.view(await _load(sessions, payment_id))
    assert (state["status"], state["refunded"]["amount"]) == ("partially_refunded", 400)
    assert await published(sessions, payment_id) == 1


async def test_a_requested_amount_counts_as_spent_and_a_refusal_gives_it_back(
        sessions: Any) -> None:
    provider = RecordingProvider()
    reg = service.Registration(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()),
                               str(uuid.uuid4()), Order(total=1_000, currency="RUB"))
    payment_id = await paid(sessions, provider, reg)
    pid = await provider_id(sessions, payment_id)
    provider.failing.add(pid)
    with pytest.raises(ServiceUnavailable):
        await service.refund(sessions, {"sandbox": provider}, payment_id, 800, None, "api:a")
    with pytest.raises(Exception, match="at most 200"):
        await service.refund(sessions, {"sandbox": provider}, payment_id, 300, None, "api:b")
    provider.failing.clear()
    provider.refusing.add(pid)
    assert await refunds.resume(sessions, {"sandbox": provider}) == (0, 1)
    async with sessions() as session:
        statuses = (await session.execute(select(refunds_table.c.status, refunds_table.c
                    .failure_reason).where(refunds_table.c.payment_id == uuid.UUID(payment_id))
                    )).all()
    assert [tuple(s) for s in statuses] == [("failed", "the provider declined the refund")]
    provider.refusing.clear()
    done = await service.refund(sessions, {"sandbox": provider}, payment_id, 300, None, "api:b")
    assert done["status"] == "succeeded" and provider.refunded(pid) == 300


async def _load(sessions: Any, payment_id: str) -> Any:
    async with sessions() as session:
        return await service.load(session, payment_id)
