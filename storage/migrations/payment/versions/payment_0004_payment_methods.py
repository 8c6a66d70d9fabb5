"""payment service: saved payment methods for one-click payments.

Revision ID: payment_0004
Revises: payment_0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "payment_0004"
down_revision = "payment_0003"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    uuid = pg.UUID(as_uuid=True)
    op.create_table(
        "payment_methods",
        sa.Column("id", uuid, primary_key=True),
        sa.Column("user_id", uuid, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("provider_method_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        *[sa.Column(name, sa.DateTime(timezone=True), nullable=False,
                    server_default=sa.func.now()) for name in ("created_at", "updated_at")],
        schema=schema,
    )
    op.create_index("uq_payment_methods_provider_id", "payment_methods",
                    ["provider", "provider_method_id"], unique=True, schema=schema)
    op.create_index("ix_payment_methods_user", "payment_methods", ["user_id", "created_at"],
                    schema=schema)
    op.add_column("payments", sa.Column("save_method", sa.Boolean, nullable=False,
                                        server_default=sa.text("false")), schema=schema)
    op.add_column("payments", sa.Column("payment_method_id", uuid), schema=schema)


def downgrade(schema: str) -> None:
    op.drop_column("payments", "payment_method_id", schema=schema)
    op.drop_column("payments", "save_method", schema=schema)
    op.drop_table("payment_methods", schema=schema)
