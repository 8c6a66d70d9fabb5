"""Opening a payment: the payer follows its Pay link, and the provider is called only then.

Pending payments are created for every paid registration of a sale, in batches and without
calling the provider (``intake``). One at a provider that must issue it (YooKassa) carries our
own ``/api/v1/payments/{id}/pay`` as its confirmation URL until its payer opens it: it is issued
there under the payment's row lock, with our payment id as the provider's idempotence key (two
clicks, or a retry after a lost answer, make one provider payment), and the payer is sent on to
the provider's page. Payments already issued send the payer straight to it.
"""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from serve.common.errors import Conflict
from serve.payments.domain import CAPTURED, Status
from serve.payments.providers import Provider
from serve.payments.rows import load
from storage.payment import payments


async def open_payment(sessions: async_sessionmaker[AsyncSession], provider: Provider,
                       payment_id: str) -> str:
    """The provider's page for this payment, issuing it there first if it is not yet."""
    async with sessions() as session, session.begin():
        row = await load(session, payment_id, lock=True)
        status = Status(row["status"])
        if status in CAPTURED:
            raise Conflict("this payment is already paid", slug="payment-paid")
        if status is Status.FAILED:
            raise Conflict(f"this payment can no longer be paid: {row['failure_reason']}",
                           slug="payment-failed")
        if row["provider_payment_id"] is None:
            if row["provider"] != provider.name:
                raise Conflict(f"this payment belongs to the provider {row['provider']!r}, "
                               f"which this platform no longer uses", slug="provider-changed")
            issued = await provider.create_payment(
                session, str(row["id"]), row["amount"], row["currency"],
                f"registration {row['registration_id']}", save_method=row["save_method"])
            await session.execute(update(payments).where(payments.c.id == row["id"]).values(
                provider_payment_id=issued.provider_payment_id,
                confirmation_url=issued.confirmation_url, updated_at=func.now()))
            url = issued.confirmation_url
        else:
            url = row["confirmation_url"]
        if not url:
            raise Conflict("this payment has no page to pay it on (it is charged to a saved "
                           "method)", slug="payment-without-page")
        return str(url)
