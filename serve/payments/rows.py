"""Reading payment rows: by id (optionally locked), and the payload of their domain events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from serve.common.errors import NotFound
from storage.payment import payments


def event_data(row: RowMapping, **extra: Any) -> dict[str, Any]:
    return {"payment_id": str(row["id"]), "registration_id": str(row["registration_id"]),
            "event_id": str(row["event_id"]), "user_id": str(row["user_id"]),
            "kind": row["kind"], "amount": row["amount"], "currency": row["currency"], **extra}


async def load(session: AsyncSession, payment_id: str, *, lock: bool = False) -> RowMapping:
    query = select(payments).where(payments.c.id == parse_id(payment_id))
    row = (await session.execute(query.with_for_update() if lock else query)).mappings().first()
    if row is None:
        raise NotFound(f"payment {payment_id} does not exist")
    return row


def parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound(f"{value!r} is not an id") from exc
