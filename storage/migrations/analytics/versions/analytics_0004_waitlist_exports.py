"""analytics service: waiting-list joins (waitlist.joined, one row per entry) and the export
jobs' claim (worker token, heartbeat, attempts) so a job whose replica died is taken over.

``waitlist_joins`` of the rollups counted seats reserved through waiting-list offers before; it
now counts joins of the waiting list, which no message recorded until now: the old counts are
reset to 0.

Revision ID: analytics_0004
Revises: analytics_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "analytics_0004"
down_revision = "analytics_0003"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    op.create_table(
        "waitlist_joins",
        sa.Column("entry_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("ticket_type_id", sa.Text, nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    for table in ("rollup_hourly", "rollup_daily"):
        op.execute(f'UPDATE "{schema}".{table} SET waitlist_joins = 0 WHERE waitlist_joins <> 0')
    op.add_column("exports", sa.Column("worker", sa.Text), schema=schema)
    op.add_column("exports", sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
                  schema=schema)
    op.add_column("exports", sa.Column("attempts", sa.Integer, nullable=False,
                                       server_default=sa.text("0")), schema=schema)
    op.create_index("ix_exports_unfinished", "exports", ["status"], schema=schema,
                    postgresql_where=sa.text("status IN ('queued', 'running')"))


def downgrade(schema: str) -> None:
    op.drop_index("ix_exports_unfinished", "exports", schema=schema)
    for column in ("attempts", "heartbeat_at", "worker"):
        op.drop_column("exports", column, schema=schema)
    op.drop_table("waitlist_joins", schema=schema)
