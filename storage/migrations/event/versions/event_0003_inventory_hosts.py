"""event service: inventory hosts. Events can be declared hot (a dedicated inventory host);
every owner scope of the inventory (a shard, or one hot event) has a fencing epoch.

Revision ID: event_0003
Revises: event_0002
"""

from alembic import op

revision = "event_0003"
down_revision = "event_0002"
branch_labels = None
depends_on = None

STATEMENTS = [
    """ALTER TABLE {s}.events ADD COLUMN hot BOOLEAN DEFAULT false NOT NULL""",
    """CREATE SEQUENCE {s}.inventory_epoch""",
    """CREATE TABLE {s}.inventory_fences (
        scope TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        owner TEXT NOT NULL,
        acquired_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (scope)
    )""",
]


def upgrade(schema: str) -> None:
    for statement in STATEMENTS:
        op.execute(statement.format(s=f'"{schema}"'))


def downgrade(schema: str) -> None:
    op.drop_table("inventory_fences", schema=schema)
    op.execute(f'DROP SEQUENCE "{schema}".inventory_epoch')
    op.drop_column("events", "hot", schema=schema)
