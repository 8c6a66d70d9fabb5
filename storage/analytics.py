"""Tables of the analytics service."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Index, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID

from storage.common import service_metadata

metadata = service_metadata("analytics")

# Every domain event analytics consumes, one time-series row each.
domain_events = Table(
    "domain_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("message_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("type", Text, nullable=False),
    Column("producer", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("correlation_id", Text, nullable=False),
    Column("event_id", Text),
    Column("organization_id", Text),
    Column("user_id", Text),
    Column("data", JSONB, nullable=False),
    Index("ix_domain_events_type_time", "type", "occurred_at"),
    Index("ix_domain_events_event_time", "event_id", "occurred_at"),
)
