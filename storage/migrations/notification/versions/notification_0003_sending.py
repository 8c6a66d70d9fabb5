"""notification service: a ``sending`` status marked before each Bot API call; chats the User
service has not been told about yet.

Revision ID: notification_0003
Revises: notification_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_0003"
down_revision = "notification_0002"
branch_labels = None
depends_on = None

OLD = "status IN ('queued', 'sent', 'failed', 'blocked', 'suppressed', 'logged')"
NEW = "status IN ('queued', 'sending', 'sent', 'failed', 'blocked', 'suppressed', 'logged')"


def upgrade(schema: str) -> None:
    op.drop_constraint("status_known", "notifications", schema=schema)
    op.create_check_constraint("status_known", "notifications", NEW, schema=schema)
    op.add_column("notifications", sa.Column("sending_at", sa.DateTime(timezone=True)),
                  schema=schema)
    op.create_index("ix_notifications_sending", "notifications", ["sending_at"], schema=schema,
                    postgresql_where=sa.text("status = 'sending'"))
    op.add_column("chats", sa.Column("user_synced", sa.Boolean, nullable=False,
                                     server_default=sa.text("true")), schema=schema)
    op.create_index("ix_chats_unsynced", "chats", ["updated_at"], schema=schema,
                    postgresql_where=sa.text("NOT user_synced"))


def downgrade(schema: str) -> None:
    op.drop_index("ix_chats_unsynced", "chats", schema=schema)
    op.drop_column("chats", "user_synced", schema=schema)
    op.drop_index("ix_notifications_sending", "notifications", schema=schema)
    op.drop_column("notifications", "sending_at", schema=schema)
    op.execute(f"UPDATE {schema}.notifications SET status = 'queued' WHERE status = 'sending'")
    op.drop_constraint("status_known", "notifications", schema=schema)
    op.create_check_constraint("status_known", "notifications", OLD, schema=schema)
