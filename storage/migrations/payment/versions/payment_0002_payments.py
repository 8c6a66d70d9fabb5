"""payment service: orders, payments, refunds, webhook events, idempotency keys, sandbox outbox.

Revision ID: payment_0002
Revises: payment_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "payment_0002"
down_revision = "payment_0001"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column]:
    return [sa.Column(name, sa.DateTime(timezone=True), nullable=False,
                      server_default=sa.func.now()) for name in ("created_at", "updated_at")]


def upgrade(schema: str) -> None:
    uuid = pg.UUID(as_uuid=True)
    op.create_table(
        "orders",
        sa.Column("registration_id", uuid, primary_key=True),
        sa.Column("event_id", uuid, nullable=False, index=True),
        sa.Column("organization_id", uuid, nullable=False),
        sa.Column("user_id", uuid, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("prepayment", sa.BigInteger),
        sa.Column("starts_at", sa.DateTime(timezone=True)),
        sa.Column("remainder_reminded_at", sa.DateTime(timezone=True)),
        sa.Column("remainder_overdue_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=schema,
    )
    op.create_table(
        "payments",
        sa.Column("id", uuid, primary_key=True),
        sa.Column("registration_id", uuid, nullable=False),
        sa.Column("event_id", uuid, nullable=False),
        sa.Column("organization_id", uuid, nullable=False),
        sa.Column("user_id", uuid, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("captured_amount", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("refunded_amount", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("provider_payment_id", sa.Text),
        sa.Column("confirmation_url", sa.Text),
        sa.Column("failure_reason", sa.Text),
        *_stamps(),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("refunded_amount <= captured_amount", name="refund_within_capture"),
        schema=schema,
    )
    op.create_index("uq_payments_live_kind", "payments", ["registration_id", "kind"],
                    unique=True, schema=schema, postgresql_where=sa.text("status <> 'failed'"))
    op.create_index("ix_payments_event", "payments", ["event_id"], schema=schema)
    op.create_index("uq_payments_provider_id", "payments", ["provider", "provider_payment_id"],
                    unique=True, schema=schema)
    op.create_table(
        "refunds",
        sa.Column("id", uuid, primary_key=True),
        sa.Column("payment_id", uuid, nullable=False, index=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("provider_refund_id", sa.Text),
        *_stamps(),
        sa.CheckConstraint("amount > 0", name="refund_positive"),
        schema=schema,
    )
    op.create_table(
        "webhook_events",
        sa.Column("provider", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("payload", pg.JSONB, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=schema,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("response", pg.JSONB),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=schema,
    )
    op.create_table(
        "sandbox_webhooks",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        schema=schema,
    )
    op.create_index("ix_sandbox_webhooks_due", "sandbox_webhooks", ["next_attempt_at"],
                    schema=schema, postgresql_where=sa.text("delivered_at IS NULL"))


def downgrade(schema: str) -> None:
    for table in ("sandbox_webhooks", "idempotency_keys", "webhook_events", "refunds", "payments",
                  "orders"):
        op.drop_table(table, schema=schema)
