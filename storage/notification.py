"""Tables of the notification_service schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from storage.common import inbox_table, outbox_table, service_metadata

metadata = service_metadata("notification")
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

STATUSES = ("queued", "sending", "sent", "failed", "blocked", "suppressed", "logged")

# One row per message to one recipient; unique per (source message, recipient, template), so a
# redelivered domain event (or a retried job) never queues the same message twice.
notifications = Table(
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
    # Marked (with its attempt) in a committed transaction just before each Bot API call.
    Column("sending_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed', 'blocked', 'suppressed', "
                    "'logged')", name="status_known"),
    Index("uq_notifications_source", "source_message_id", "recipient_id", "template_key",
          unique=True),
    Index("ix_notifications_queued", "not_before", "id",
          postgresql_where=text("status = 'queued'")),
    # The sender's oldest due rows, in id order, without walking the rows already handled.
    Index("ix_notifications_queued_id", "id", postgresql_where=text("status = 'queued'")),
    Index("ix_notifications_sending", "sending_at", postgresql_where=text("status = 'sending'")),
    Index("ix_notifications_recipient", "recipient_id", "id"),
    Index("ix_notifications_event", "event_id", "id"),
    Index("ix_notifications_job", "job_id"),
)

# The Telegram side of a user: chat, language, and whether the chat can be reached.
chats = Table(
    "chats", metadata,
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("chat_id", BigInteger, nullable=False, unique=True),
    Column("language_code", Text),
    Column("unreachable", Boolean, nullable=False, server_default=text("false")),
    Column("unreachable_reason", Text),
    Column("migrated_from_chat_id", BigInteger),
    # False until the User service has been told of the chat (linked, unreachable, reachable).
    Column("user_synced", Boolean, nullable=False, server_default=text("true")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_chats_unsynced", "updated_at", postgresql_where=text("NOT user_synced")),
)

# The live ticket: one Telegram message per registration, edited in place as it moves.
tickets = Table(
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

templates = Table(
    "templates", metadata,
    Column("key", Text, primary_key=True),
    Column("locale", Text, primary_key=True),
    Column("body", Text, nullable=False),
    Column("updated_by", UUID(as_uuid=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

preferences = Table(
    "preferences", metadata,
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("telegram", Boolean, nullable=False, server_default=text("true")),
    Column("opt_out", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("quiet_start", Text),
    Column("quiet_end", Text),
    Column("time_zone", Text, nullable=False, server_default=text("'UTC'")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

jobs = Table(
    "jobs", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("requested_by", UUID(as_uuid=True), nullable=False),
    Column("event_id", UUID(as_uuid=True)),
    Column("text", Text, nullable=False),
    Column("recipients", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Bot updates already handled (Telegram redelivers a webhook call it saw no 2xx for).
updates = Table(
    "updates", metadata,
    Column("update_id", BigInteger, primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def queued_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which a trigger announces newly queued notifications
    (migration ``notification_0005``), so a sender at rest wakes for them."""
    return f"afisha_queued_{schema}"
