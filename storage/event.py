"""Tables of the event service (schema ``event_service``). Ids are text: canonical UUIDs.

Seats are counted from two places: ``registrations`` in confirmed/checked_in own seats, and
``reservations`` in status ``held`` hold them until ``expires_at``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Sequence,
    Table,
    Text,
    func,
    text,
)

from storage.common import inbox_table, outbox_table, service_metadata

metadata = service_metadata("event")
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


def read_changes_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which triggers announce changes to what event reads show
    (migration ``event_0004``)."""
    return f"afisha_reads_{schema}"


def _now() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False,
                  server_default=func.now())


events = Table(
    "events", metadata,
    Column("id", Text, primary_key=True),
    Column("organization_id", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("venue", Text, nullable=False, server_default=""),
    Column("visibility", Text, nullable=False),
    Column("group_id", Text),
    Column("participants_visibility", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("cover_media_id", Text),
    Column("created_by", Text, nullable=False),
    # A hot event's inventory has a host process of its own (declared ahead of a big sale).
    Column("hot", Boolean, nullable=False, server_default=text("false")),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_events_listing", "starts_at", "id"),
    Index("ix_events_organization", "organization_id"),
)

ticket_types = Table(
    "ticket_types", metadata,
    Column("id", Text, primary_key=True),
    Column("event_id", Text, ForeignKey("events.id"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("price", Integer, nullable=False),
    Column("currency", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("per_user_limit", Integer),
    Column("prepayment_amount", Integer),
    Column("sales_start", DateTime(timezone=True)),
    Column("sales_end", DateTime(timezone=True)),
    _now(),
)

registrations = Table(
    "registrations", metadata,
    Column("id", Text, primary_key=True),
    Column("event_id", Text, ForeignKey("events.id"), nullable=False),
    Column("ticket_type_id", Text, ForeignKey("ticket_types.id"), nullable=False),
    Column("user_id", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("payment_mode", Text, nullable=False),
    Column("amount", Integer, nullable=False),
    Column("currency", Text, nullable=False),
    Column("prepayment_amount", Integer),
    Column("refund_due", Boolean, nullable=False, server_default=text("false")),
    Column("end_reason", Text),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_registrations_event_status", "event_id", "status"),
    Index("ix_registrations_user", "user_id", "created_at"),
)

reservations = Table(
    "reservations", metadata,
    Column("id", Text, primary_key=True),
    Column("registration_id", Text, ForeignKey("registrations.id"), nullable=False,
           unique=True),
    Column("event_id", Text, nullable=False),
    Column("ticket_type_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", Text, nullable=False),  # held | confirmed | expired | cancelled
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    _now(),
    Index("ix_reservations_held", "event_id", "expires_at",
          postgresql_where=text("status = 'held'")),
)

checkins = Table(
    "checkins", metadata,
    Column("registration_id", Text, ForeignKey("registrations.id"), primary_key=True),
    Column("event_id", Text, nullable=False),
    Column("checked_in_by", Text, nullable=False),
    Column("checked_in_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

waitlist_entries = Table(
    "waitlist_entries", metadata,
    Column("id", Text, primary_key=True),
    Column("event_id", Text, ForeignKey("events.id"), nullable=False),
    Column("ticket_type_id", Text, ForeignKey("ticket_types.id"), nullable=False),
    Column("user_id", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", Text, nullable=False),  # waiting | offered | left | done
    Column("registration_id", Text),
    _now(),
    Index("ux_waitlist_active", "event_id", "user_id", unique=True,
          postgresql_where=text("status IN ('waiting', 'offered')")),
)

group_members = Table(
    "group_members", metadata,
    Column("group_id", Text, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("organization_id", Text, nullable=False),
    _now(),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("user_id", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("registration_id", Text, nullable=False),
    _now(),
)

# The fencing epoch of each owner scope of the inventory (``shard:<n>`` or ``event:<id>``): an
# inventory host takes a new epoch for its scopes when it starts, and every write it makes checks
# the epoch in the same transaction, so a host that was replaced can no longer commit.
inventory_fences = Table(
    "inventory_fences", metadata,
    Column("scope", Text, primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("owner", Text, nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
inventory_epoch = Sequence("inventory_epoch", metadata=metadata)

reminders_sent = Table(
    "reminders_sent", metadata,
    Column("event_id", Text, ForeignKey("events.id"), primary_key=True),
    Column("offset_minutes", Integer, primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
