"""Tables of the media_service schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from storage.common import inbox_table, outbox_table, service_metadata

metadata = service_metadata("media")
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)

media = Table(
    "media", metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("purpose", Text, nullable=False),
    Column("organization_id", UUID(as_uuid=True)),
    Column("uploader_id", UUID(as_uuid=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("failure_reason", Text),
    Column("content_type", Text, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("file_name", Text),
    Column("object_key", Text, nullable=False),
    # name -> {key, width, height, bytes, content_type}
    Column("variants", JSONB, nullable=False, server_default="{}"),
    Column("attached_event_id", UUID(as_uuid=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_media_orphans", "created_at"),
)

# What the media service knows of each event from the Event service's domain events: whether
# anyone may see it (published or completed, and public), as of the event row's updated_at.
event_states = Table(
    "event_states", metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("public", Boolean, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)
