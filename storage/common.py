"""Tables every service schema has: the transactional outbox, the consumer inbox and the
dead letters of the embedded transport."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

from cluster.settings import schema_of


def service_metadata(service: str) -> MetaData:
    return MetaData(schema=schema_of(service))


def outbox_table(metadata: MetaData) -> Table:
    """Domain events written in the same transaction as the state change that caused them."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("message_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("type", Text, nullable=False),
        Column("aggregate_id", Text, nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True)),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text),
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
    )


def inbox_table(metadata: MetaData) -> Table:
    """Ids of messages whose effect has committed: a redelivered message is a no-op."""
    return Table(
        "inbox",
        metadata,
        Column("message_id", UUID(as_uuid=True), primary_key=True),
        Column("type", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def dead_letter_table(metadata: MetaData) -> Table:
    """Messages a consumer gave up on (embedded transport; RabbitMQ keeps its own queue)."""
    return Table(
        "dead_letter",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("message_id", UUID(as_uuid=True), nullable=False),
        Column("type", Text, nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("reason", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
