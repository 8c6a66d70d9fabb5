"""Tables of the payment_service schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from storage.common import inbox_table, outbox_table, service_metadata

metadata = service_metadata("payment")
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


def _timestamps() -> list[Column]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


orders = Table(
    "orders", metadata,
    Column("registration_id", UUID(as_uuid=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("prepayment", BigInteger),
    Column("starts_at", DateTime(timezone=True)),
    Column("remainder_reminded_at", DateTime(timezone=True)),
    Column("remainder_overdue_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

payments = Table(
    "payments", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("registration_id", UUID(as_uuid=True), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("captured_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("refunded_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("provider", Text, nullable=False),
    Column("provider_payment_id", Text),
    Column("confirmation_url", Text),
    Column("failure_reason", Text),
    # The payer asked to keep the payment method for one-click payments.
    Column("save_method", Boolean, nullable=False, server_default=text("false")),
    Column("payment_method_id", UUID(as_uuid=True)),  # charged to a saved method
    *_timestamps(),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("refunded_amount <= captured_amount", name="refund_within_capture"),
    Index("uq_payments_live_kind", "registration_id", "kind", unique=True,
          postgresql_where=text("status <> 'failed'")),
    Index("ix_payments_event", "event_id"),
    Index("uq_payments_provider_id", "provider", "provider_payment_id", unique=True),
)

# A payer's saved payment method: the provider's id, its type and a display title only (card
# data never reaches Afisha).
payment_methods = Table(
    "payment_methods", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("provider", Text, nullable=False),
    Column("provider_method_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("title", Text, nullable=False),
    *_timestamps(),
    Index("uq_payment_methods_provider_id", "provider", "provider_method_id", unique=True),
    Index("ix_payment_methods_user", "user_id", "created_at"),
)

refunds = Table(
    "refunds", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("payment_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text),
    Column("provider_refund_id", Text),
    # What the refund is for (an event's or a registration's cancellation, an API call's key);
    # the id is derived from the payment and the cause. Status: requested (an intent not yet
    # answered by the provider), pending, succeeded, failed.
    Column("cause", Text),
    Column("failure_reason", Text),
    *_timestamps(),
    CheckConstraint("amount > 0", name="refund_positive"),
    Index("ix_refunds_requested", "created_at", postgresql_where=text("status = 'requested'")),
)

webhook_events = Table(
    "webhook_events", metadata,
    Column("provider", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("payload", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("request_hash", Text, nullable=False),
    Column("status_code", Integer),
    Column("response", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

sandbox_webhooks = Table(
    "sandbox_webhooks", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Index("ix_sandbox_webhooks_due", "next_attempt_at",
          postgresql_where=text("delivered_at IS NULL")),
)
