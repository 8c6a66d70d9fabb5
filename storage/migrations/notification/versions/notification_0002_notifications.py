"""notification service: notifications, chats, live tickets, templates, preferences, jobs.

Revision ID: notification_0002
Revises: notification_0001
"""

from alembic import op
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "notification_0002"
down_revision = "notification_0001"
branch_labels = None
depends_on = None

NAMES = ("notifications", "chats", "tickets", "templates", "preferences", "jobs", "updates")


def _tables(metadata: MetaData) -> None:
    """The tables as this revision made them (frozen here, not imported from storage)."""
    # One row per message to one recipient; unique per (source message, recipient, template), so a
    # redelivered domain event (or a retried job) never queues the same message twice.
    Table(
        "notifications", metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("recipient_id", UUID(as_uuid=True), nullable=False),
        Column("template_key", Text, nullable=False),
        Column("locale", Text, nullable=False, server_default=text("'ru'")),
        Column("source_message_id", UUID(as_uuid=True), nullable=False),
        Column("registration_id", UUID(as_uuid=True)),
        Column("event_id", UUID(as_uuid=True)),
        Column("job_id", UUID(as_uuid=True)),
        Column("urgent", Boolean, nullable=False, server_default=text("true")),
        Column("payload", JSONB, nullable=False),
        Column("status", Text, nullable=False, server_default=text("'queued'")),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("telegram_message_id", BigInteger),
        Column("chat_id", BigInteger),
        Column("last_error", Text),
        Column("not_before", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True)),
        CheckConstraint("status IN ('queued', 'sent', 'failed', 'blocked', 'suppressed', 'logged')",
                        name="status_known"),
        Index("uq_notifications_source", "source_message_id", "recipient_id", "template_key",
              unique=True),
        Index("ix_notifications_queued", "not_before", "id",
              postgresql_where=text("status = 'queued'")),
        Index("ix_notifications_recipient", "recipient_id", "id"),
        Index("ix_notifications_event", "event_id", "id"),
        Index("ix_notifications_job", "job_id"),
    )

    # The Telegram side of a user: chat, language, and whether the chat can be reached.
    Table(
        "chats", metadata,
        Column("user_id", UUID(as_uuid=True), primary_key=True),
        Column("chat_id", BigInteger, nullable=False, unique=True),
        Column("language_code", Text),
        Column("unreachable", Boolean, nullable=False, server_default=text("false")),
        Column("unreachable_reason", Text),
        Column("migrated_from_chat_id", BigInteger),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )

    # The live ticket: one Telegram message per registration, edited in place as it moves.
    Table(
        "tickets", metadata,
        Column("registration_id", UUID(as_uuid=True), primary_key=True),
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("user_id", UUID(as_uuid=True), nullable=False),
        Column("status", Text, nullable=False),
        Column("title", Text),
        Column("quantity", Integer, nullable=False, server_default=text("1")),
        Column("amount", BigInteger, nullable=False, server_default=text("0")),
        Column("currency", Text, nullable=False, server_default=text("'RUB'")),
        Column("confirmation_url", Text),
        Column("expires_at", Text),
        Column("chat_id", BigInteger),
        Column("message_id", BigInteger),
        Column("photo", Text),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index("ix_tickets_event", "event_id", "registration_id"),
    )

    Table(
        "templates", metadata,
        Column("key", Text, primary_key=True),
        Column("locale", Text, primary_key=True),
        Column("body", Text, nullable=False),
        Column("updated_by", UUID(as_uuid=True)),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )

    Table(
        "preferences", metadata,
        Column("user_id", UUID(as_uuid=True), primary_key=True),
        Column("telegram", Boolean, nullable=False, server_default=text("true")),
        Column("opt_out", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("quiet_start", Text),
        Column("quiet_end", Text),
        Column("time_zone", Text, nullable=False, server_default=text("'UTC'")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )

    Table(
        "jobs", metadata,
        Column("id", UUID(as_uuid=True), primary_key=True),
        Column("requested_by", UUID(as_uuid=True), nullable=False),
        Column("event_id", UUID(as_uuid=True)),
        Column("text", Text, nullable=False),
        Column("recipients", Integer, nullable=False, server_default=text("0")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )

    # Bot updates already handled (Telegram redelivers a webhook call it saw no 2xx for).
    Table(
        "updates", metadata,
        Column("update_id", BigInteger, primary_key=True),
        Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def upgrade(schema: str) -> None:
    metadata = MetaData(schema=schema)
    _tables(metadata)
    metadata.create_all(op.get_bind())


def downgrade(schema: str) -> None:
    for name in reversed(NAMES):
        op.drop_table(name, schema=schema)
