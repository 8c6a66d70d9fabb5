"""notification service: schema with the transactional outbox and the consumer inbox.

Revision ID: notification_0001
Revises:
"""

from storage.migrations.common import create_messaging_tables, drop_messaging_tables

revision = "notification_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    create_messaging_tables(schema)


def downgrade(schema: str) -> None:
    drop_messaging_tables(schema)
