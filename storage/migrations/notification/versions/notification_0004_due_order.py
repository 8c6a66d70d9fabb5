"""notification service: an index that gives the sender the oldest queued rows in id order.

The sender asks for ``status = 'queued' AND not_before <= now() ORDER BY id LIMIT n``. With only
``ix_notifications_queued`` (not_before, id) the planner walked the primary key from the first
row ever written and filtered out every row already handled: 11 ms per query over 80,000
handled rows, growing with the table. This partial index holds only the queued rows, in id
order (0.06 ms for the same query).

Revision ID: notification_0004
Revises: notification_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_0004"
down_revision = "notification_0003"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.create_index("ix_notifications_queued_id", "notifications", ["id"], schema=schema,
                    postgresql_where=sa.text("status = 'queued'"))


def downgrade(schema: str) -> None:
    op.drop_index("ix_notifications_queued_id", "notifications", schema=schema)
