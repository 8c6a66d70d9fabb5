"""notification service: a statement that queues notifications announces it on the
``afisha_queued_<schema>`` channel (``storage.notification.queued_channel``).

A sender at rest then waits for that notification (or for the earliest queued row's
``not_before``) instead of polling: whichever replica's consumer queued the rows, the sender
holding the drain wakes for them. Postgres delivers a notification only once its transaction
commits, and one per channel and payload per transaction.

Revision ID: notification_0005
Revises: notification_0004
"""

from alembic import op

from storage.notification import queued_channel

revision = "notification_0005"
down_revision = "notification_0004"
branch_labels = None
depends_on = None

FUNCTION = """CREATE FUNCTION {s}.announce_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM inserted WHERE status = 'queued') THEN
    PERFORM pg_notify(TG_ARGV[0], '');
  END IF;
  RETURN NULL;
END $$"""


def upgrade(schema: str) -> None:
    s = f'"{schema}"'
    channel = queued_channel(schema).replace("'", "''")
    op.execute(FUNCTION.format(s=s))
    op.execute(f"CREATE TRIGGER announce_queued AFTER INSERT ON {s}.notifications "
               f"REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT "
               f"EXECUTE FUNCTION {s}.announce_queued('{channel}')")


def downgrade(schema: str) -> None:
    s = f'"{schema}"'
    op.execute(f"DROP TRIGGER announce_queued ON {s}.notifications")
    op.execute(f"DROP FUNCTION {s}.announce_queued()")
