"""analytics service: raw series partitioned by month, registration facts, hourly rollups,
tracked views, export jobs.

Revision ID: analytics_0003
Revises: analytics_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "analytics_0003"
down_revision = "analytics_0002"
branch_labels = None
depends_on = None

COUNTERS = ("page_views", "unique_visitors", "ticket_views", "shares", "reservations",
            "confirmations", "cancellations", "confirmed_cancellations", "expiries", "checkins",
            "waitlist_joins")


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade(schema: str) -> None:
    # The unpartitioned series of 0002 becomes a partitioned one (rows kept).
    op.execute(f'ALTER TABLE "{schema}".domain_events RENAME TO domain_events_0002')
    op.execute(f'ALTER INDEX "{schema}".ix_domain_events_type_time RENAME TO ix_de0002_type')
    op.execute(f'ALTER INDEX "{schema}".ix_domain_events_event_time RENAME TO ix_de0002_event')
    op.execute(f'ALTER TABLE "{schema}".domain_events_0002 '
               'RENAME CONSTRAINT domain_events_pkey TO domain_events_0002_pkey')
    op.create_table(
        "domain_events",
        sa.Column("id", sa.BigInteger, autoincrement=True, nullable=False),
        sa.Column("message_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("producer", sa.Text, nullable=False),
        _ts("occurred_at", False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text),
        sa.Column("organization_id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("data", pg.JSONB, nullable=False),
        sa.PrimaryKeyConstraint("id", "occurred_at", name="domain_events_pkey"),
        schema=schema, postgresql_partition_by="RANGE (occurred_at)",
    )
    op.create_index("ix_domain_events_type_time", "domain_events", ["type", "occurred_at"],
                    schema=schema)
    op.create_index("ix_domain_events_event_time", "domain_events", ["event_id", "occurred_at"],
                    schema=schema)
    op.create_index("ix_domain_events_message", "domain_events", ["message_id"], schema=schema)
    op.execute(f'CREATE TABLE "{schema}".domain_events_default '
               f'PARTITION OF "{schema}".domain_events DEFAULT')
    op.execute(f'INSERT INTO "{schema}".domain_events (message_id, type, producer, occurred_at, '
               'recorded_at, correlation_id, event_id, organization_id, user_id, data) '
               'SELECT message_id, type, producer, occurred_at, recorded_at, correlation_id, '
               f'event_id, organization_id, user_id, data FROM "{schema}".domain_events_0002 '
               'ORDER BY id')
    op.execute(f'DROP TABLE "{schema}".domain_events_0002')

    op.create_table(
        "track_events",
        sa.Column("id", sa.BigInteger, autoincrement=True, nullable=False),
        _ts("ts", False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text),
        sa.Column("visitor", sa.Text, nullable=False),
        sa.Column("is_unique", sa.Boolean, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("referrer", sa.Text),
        sa.Column("utm", pg.JSONB),
        sa.PrimaryKeyConstraint("id", "ts", name="track_events_pkey"),
        schema=schema, postgresql_partition_by="RANGE (ts)",
    )
    op.create_index("ix_track_events_event_time", "track_events", ["event_id", "ts"],
                    schema=schema)
    op.execute(f'CREATE TABLE "{schema}".track_events_default '
               f'PARTITION OF "{schema}".track_events DEFAULT')

    op.create_table(
        "visitor_salts",
        sa.Column("day", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("salt", sa.LargeBinary, nullable=False),
        schema=schema,
    )
    op.create_table(
        "visitor_marks",
        sa.Column("visitor", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        _ts("last_unique_at", False),
        _ts("last_seen_at", False),
        sa.PrimaryKeyConstraint("visitor", "event_id", "type", name="visitor_marks_pkey"),
        schema=schema,
    )
    op.create_index("ix_visitor_marks_seen", "visitor_marks", ["last_seen_at"], schema=schema)
    op.create_table(
        "registration_facts",
        sa.Column("registration_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text),
        sa.Column("organization_id", sa.Text),
        sa.Column("ticket_type_id", sa.Text),
        sa.Column("quantity", sa.Integer),
        _ts("reserved_at"), _ts("confirmed_at"), _ts("cancelled_at"), _ts("expired_at"),
        _ts("checked_in_at"),
        sa.Column("waitlist_offer", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("money", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        schema=schema,
    )
    op.create_table(
        "event_meta",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("organization_id", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("starts_at", sa.Text),
        sa.Column("status", sa.Text),
        _ts("updated_at", False),
        schema=schema,
    )
    op.create_index("ix_event_meta_organization", "event_meta", ["organization_id"],
                    schema=schema)
    op.create_table(
        "rollup_hourly",
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("ticket_type_id", sa.Text, nullable=False),
        _ts("hour", False),
        *(sa.Column(n, sa.BigInteger, nullable=False, server_default=sa.text("0"))
          for n in COUNTERS),
        sa.PrimaryKeyConstraint("event_id", "hour", "ticket_type_id", name="rollup_hourly_pkey"),
        schema=schema,
    )
    op.create_table(
        "revenue_hourly",
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("ticket_type_id", sa.Text, nullable=False),
        _ts("hour", False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("gross", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("refunded", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("event_id", "hour", "ticket_type_id", "currency",
                                name="revenue_hourly_pkey"),
        schema=schema,
    )
    for grain in ("daily",):
        op.create_table(
            f"rollup_{grain}",
            sa.Column("event_id", sa.Text, nullable=False),
            sa.Column("ticket_type_id", sa.Text, nullable=False),
            _ts("day", False),
            *(sa.Column(n, sa.BigInteger, nullable=False, server_default=sa.text("0"))
              for n in COUNTERS),
            sa.PrimaryKeyConstraint("event_id", "day", "ticket_type_id",
                                    name=f"rollup_{grain}_pkey"),
            schema=schema,
        )
        op.create_table(
            f"revenue_{grain}",
            sa.Column("event_id", sa.Text, nullable=False),
            sa.Column("ticket_type_id", sa.Text, nullable=False),
            _ts("day", False),
            sa.Column("currency", sa.Text, nullable=False),
            sa.Column("gross", sa.BigInteger, nullable=False, server_default=sa.text("0")),
            sa.Column("refunded", sa.BigInteger, nullable=False, server_default=sa.text("0")),
            sa.PrimaryKeyConstraint("event_id", "day", "ticket_type_id", "currency",
                                    name=f"revenue_{grain}_pkey"),
            schema=schema,
        )
    op.create_table(
        "exports",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("requested_by", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("scope_id", sa.Text, nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        _ts("range_from", False), _ts("range_to", False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("rows_total", sa.BigInteger),
        sa.Column("rows_written", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("bytes_written", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("max_buffered_bytes", sa.BigInteger, nullable=False,
                  server_default=sa.text("0")),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        _ts("finished_at"),
        schema=schema,
    )
    op.create_table(
        "export_chunks",
        sa.Column("export_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("export_id", "seq", name="export_chunks_pkey"),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    for table in ("export_chunks", "exports", "revenue_daily", "rollup_daily",
                  "revenue_hourly", "rollup_hourly", "event_meta", "registration_facts",
                  "visitor_marks", "visitor_salts", "track_events"):
        op.drop_table(table, schema=schema)
