"""media service: event_states, whether each event's cover is public (from event domain events).

Revision ID: media_0003
Revises: media_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "media_0003"
down_revision = "media_0002"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.create_table(
        "event_states",
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    op.drop_table("event_states", schema=schema)
