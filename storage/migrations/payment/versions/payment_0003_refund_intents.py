"""payment service: refunds are recorded as intents before the provider is called.

Revision ID: payment_0003
Revises: payment_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "payment_0003"
down_revision = "payment_0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.add_column("refunds", sa.Column("cause", sa.Text), schema=schema)
    op.add_column("refunds", sa.Column("failure_reason", sa.Text), schema=schema)
    op.create_index("ix_refunds_requested", "refunds", ["created_at"], schema=schema,
                    postgresql_where=sa.text("status = 'requested'"))


def downgrade(schema: str) -> None:
    op.drop_index("ix_refunds_requested", table_name="refunds", schema=schema)
    op.drop_column("refunds", "failure_reason", schema=schema)
    op.drop_column("refunds", "cause", schema=schema)
