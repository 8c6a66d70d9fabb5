"""analytics service: the time series of consumed domain events.

Revision ID: analytics_0002
Revises: analytics_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "analytics_0002"
down_revision = "analytics_0001"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.create_table(
        "domain_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("message_id", pg.UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("producer", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text),
        sa.Column("organization_id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("data", pg.JSONB, nullable=False),
        schema=schema,
    )
    op.create_index("ix_domain_events_type_time", "domain_events", ["type", "occurred_at"],
                    schema=schema)
    op.create_index("ix_domain_events_event_time", "domain_events", ["event_id", "occurred_at"],
                    schema=schema)


def downgrade(schema: str) -> None:
    op.drop_table("domain_events", schema=schema)
