"""Plain-dict views of rows as the API returns them (JSON-ready)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def registration_view(row: dict[str, Any]) -> dict[str, Any]:
    """A registration row joined with its reservation (``load_registration``)."""
    reservation = None
    if row.get("reservation_id") and row.get("status") == "pending_payment":
        reservation = {"id": row["reservation_id"], "expires_at": iso(row.get("expires_at"))}
    return {
        "id": row["id"], "event_id": row["event_id"], "ticket_type_id": row["ticket_type_id"],
        "user_id": row["user_id"], "quantity": row["quantity"], "status": row["status"],
        "payment_mode": row["payment_mode"],
        "amount": {"amount": row["amount"], "currency": row["currency"]},
        "prepayment_amount": row.get("prepayment_amount"),
        "refund_due": bool(row.get("refund_due")),
        "reservation": reservation,
        "created_at": iso(row.get("created_at")),
    }


def event_view(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "organization_id", "title", "description", "venue", "visibility", "group_id",
            "participants_visibility", "status", "cover_media_id", "created_by", "hot")
    view = {k: row.get(k) for k in keys}
    for k in ("starts_at", "ends_at", "created_at", "updated_at"):
        view[k] = iso(row.get(k))
    return view


def ticket_type_view(row: dict[str, Any], available: int | None = None) -> dict[str, Any]:
    return {
        "id": row["id"], "event_id": row["event_id"], "name": row["name"],
        "price": {"amount": row["price"], "currency": row["currency"]},
        "quantity": row["quantity"], "per_user_limit": row["per_user_limit"],
        "prepayment_amount": row["prepayment_amount"], "sales_start": iso(row["sales_start"]),
        "sales_end": iso(row["sales_end"]), "available": available,
    }
