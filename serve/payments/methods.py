"""A payer's saved payment methods: kept when a payment made with ``save_payment_method``
succeeds and its provider reports the method it kept; listed and deleted by their owner only.
Only the provider's id, the method's type and a display title are stored: card data never
reaches Afisha."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from serve.common.errors import NotFound, Unprocessable
from serve.payments.providers import SavedMethod
from storage.payment import payment_methods


async def keep(session: AsyncSession, user_id: uuid.UUID, provider: str,
               method: SavedMethod) -> None:
    await session.execute(pg_insert(payment_methods).values(
        id=uuid.uuid4(), user_id=user_id, provider=provider,
        provider_method_id=method.provider_method_id, type=method.type, title=method.title,
    ).on_conflict_do_nothing())


def _id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound(f"no payment method {value!r}", slug="unknown-payment-method") from exc


async def own(session: AsyncSession, user_id: str, method_id: str,
              provider: str | None = None) -> RowMapping:
    """The payer's method ``method_id``; 404 for an unknown one or another payer's, 422 for
    one of another ``provider`` than the one charging."""
    row = (await session.execute(select(payment_methods).where(
        payment_methods.c.id == _id(method_id),
        payment_methods.c.user_id == uuid.UUID(str(user_id))))).mappings().first()
    if row is None:
        raise NotFound(f"no payment method {method_id}", slug="unknown-payment-method")
    if provider is not None and row["provider"] != provider:
        raise Unprocessable("this payment method belongs to another provider",
                            slug="unknown-payment-method")
    return row


async def listed(session: AsyncSession, user_id: str) -> dict[str, Any]:
    rows = (await session.execute(select(payment_methods).where(
        payment_methods.c.user_id == uuid.UUID(str(user_id)))
        .order_by(payment_methods.c.created_at, payment_methods.c.id))).mappings().all()
    return {"items": [view(r) for r in rows], "next_cursor": None}


async def forget(session: AsyncSession, user_id: str, method_id: str) -> None:
    row = await own(session, user_id, method_id)
    await session.execute(delete(payment_methods).where(payment_methods.c.id == row["id"]))


def view(row: Any) -> dict[str, Any]:
    return {"id": str(row["id"]), "provider": row["provider"], "type": row["type"],
            "title": row["title"], "created_at": row["created_at"].isoformat()}
