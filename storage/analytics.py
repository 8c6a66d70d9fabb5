"""Tables of the analytics service.

The raw series (``domain_events``, ``track_events``) are partitioned by month on their time
column: range partitions ``<table>_pYYYYMM`` created ahead by the service's sweep, plus a
``<table>_default`` partition for anything outside them. Dashboards never read them: they read
the rollups (``rollup_hourly``, ``revenue_hourly`` and their ``_daily`` twins), which are kept
up to date in the transaction that consumes each batch.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from serve.analytics.domain import COUNTERS
from storage.common import service_metadata

metadata = service_metadata("analytics")

PARTITIONED = ("domain_events", "track_events")
_PARTITION = re.compile(r"^(domain_events|track_events)_(p\d{6}|default)$")


def is_partition(name: str | None) -> bool:
    """A monthly (or the default) partition of a raw series, created outside the migrations."""
    return bool(name and _PARTITION.match(name))


# Every domain event analytics consumes, one time-series row each (the inbox makes the message
# id unique; a partitioned table cannot have a unique index without its partition key).
domain_events = Table(
    "domain_events",
    metadata,
    Column("id", BigInteger, autoincrement=True, nullable=False),
    Column("message_id", UUID(as_uuid=True), nullable=False),
    Column("type", Text, nullable=False),
    Column("producer", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("correlation_id", Text, nullable=False),
    Column("event_id", Text),
    Column("organization_id", Text),
    Column("user_id", Text),
    Column("data", JSONB, nullable=False),
    PrimaryKeyConstraint("id", "occurred_at", name="domain_events_pkey"),
    Index("ix_domain_events_type_time", "type", "occurred_at"),
    Index("ix_domain_events_event_time", "event_id", "occurred_at"),
    Index("ix_domain_events_message", "message_id"),
    postgresql_partition_by="RANGE (occurred_at)",
)

# Tracked page views, ticket views and shares (POST /analytics/track): no IP, no cookie.
track_events = Table(
    "track_events",
    metadata,
    Column("id", BigInteger, autoincrement=True, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("type", Text, nullable=False),
    Column("event_id", Text),
    Column("visitor", Text, nullable=False),
    Column("is_unique", Boolean, nullable=False),
    Column("path", Text, nullable=False),
    Column("referrer", Text),
    Column("utm", JSONB),
    PrimaryKeyConstraint("id", "ts", name="track_events_pkey"),
    Index("ix_track_events_event_time", "event_id", "ts"),
    postgresql_partition_by="RANGE (ts)",
)

# Daily salts of the visitor hash; deleted after 48 hours so old hashes cannot be recomputed.
visitor_salts = Table(
    "visitor_salts",
    metadata,
    Column("day", DateTime(timezone=True), primary_key=True),
    Column("salt", LargeBinary, nullable=False),
)

# Last view of a visitor per event and type: within 30 minutes a view is not unique again.
visitor_marks = Table(
    "visitor_marks",
    metadata,
    Column("visitor", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("last_unique_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("visitor", "event_id", "type", name="visitor_marks_pkey"),
    Index("ix_visitor_marks_seen", "last_seen_at"),
)

# What analytics knows of each registration (serve.analytics.domain.Facts).
registration_facts = Table(
    "registration_facts",
    metadata,
    Column("registration_id", Text, primary_key=True),
    Column("event_id", Text),
    Column("organization_id", Text),
    Column("ticket_type_id", Text),
    Column("quantity", Integer),
    Column("reserved_at", DateTime(timezone=True)),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("expired_at", DateTime(timezone=True)),
    Column("checked_in_at", DateTime(timezone=True)),
    Column("waitlist_offer", Boolean, nullable=False, server_default=text("false")),
    Column("money", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
)

# Each waiting-list join (waitlist.joined) once, however often its message arrives.
waitlist_joins = Table(
    "waitlist_joins",
    metadata,
    Column("entry_id", Text, primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("ticket_type_id", Text, nullable=False),
    Column("joined_at", DateTime(timezone=True), nullable=False),
)

# Events and their organization (event.* messages), for organization reports and exports.
event_meta = Table(
    "event_meta",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("organization_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("starts_at", Text),
    Column("status", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_event_meta_organization", "organization_id"),
)

rollup_hourly = Table(
    "rollup_hourly",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("ticket_type_id", Text, nullable=False),
    Column("hour", DateTime(timezone=True), nullable=False),
    *(Column(name, BigInteger, nullable=False, server_default=text("0")) for name in COUNTERS),
    PrimaryKeyConstraint("event_id", "hour", "ticket_type_id", name="rollup_hourly_pkey"),
)

revenue_hourly = Table(
    "revenue_hourly",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("ticket_type_id", Text, nullable=False),
    Column("hour", DateTime(timezone=True), nullable=False),
    Column("currency", Text, nullable=False),
    Column("gross", BigInteger, nullable=False, server_default=text("0")),
    Column("refunded", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("event_id", "hour", "ticket_type_id", "currency",
                         name="revenue_hourly_pkey"),
)

# The same counters per UTC day (the dashboard's day buckets and reports read these for whole
# days in their range, the hourly rows only for the partial days at its ends).
rollup_daily = Table(
    "rollup_daily",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("ticket_type_id", Text, nullable=False),
    Column("day", DateTime(timezone=True), nullable=False),
    *(Column(name, BigInteger, nullable=False, server_default=text("0")) for name in COUNTERS),
    PrimaryKeyConstraint("event_id", "day", "ticket_type_id", name="rollup_daily_pkey"),
)

revenue_daily = Table(
    "revenue_daily",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("ticket_type_id", Text, nullable=False),
    Column("day", DateTime(timezone=True), nullable=False),
    Column("currency", Text, nullable=False),
    Column("gross", BigInteger, nullable=False, server_default=text("0")),
    Column("refunded", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("event_id", "day", "ticket_type_id", "currency",
                         name="revenue_daily_pkey"),
)

# Export jobs and the chunks of their file (kept in the database so any replica serves them).
exports = Table(
    "exports",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("requested_by", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("scope_id", Text, nullable=False),
    Column("format", Text, nullable=False),
    Column("range_from", DateTime(timezone=True), nullable=False),
    Column("range_to", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("rows_total", BigInteger),
    Column("rows_written", BigInteger, nullable=False, server_default=text("0")),
    Column("bytes_written", BigInteger, nullable=False, server_default=text("0")),
    Column("max_buffered_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    # The claim of the worker writing it (a token per run) and its last sign of life.
    Column("worker", Text),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Index("ix_exports_unfinished", "status", postgresql_where=text(
        "status IN ('queued', 'running')")),
)

export_chunks = Table(
    "export_chunks",
    metadata,
    Column("export_id", UUID(as_uuid=True), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("export_id", "seq", name="export_chunks_pkey"),
)
