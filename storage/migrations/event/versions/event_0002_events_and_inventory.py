"""event service: events, ticket types, registrations, reservations, check-ins, waiting
lists, the group-members mirror, registration idempotency keys and reminders sent.

Revision ID: event_0002
Revises: event_0001
"""

from alembic import op

revision = "event_0002"
down_revision = "event_0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    """CREATE TABLE {s}.events (
        id TEXT NOT NULL,
        organization_id TEXT NOT NULL,
        title TEXT NOT NULL,
        description TEXT DEFAULT '' NOT NULL,
        starts_at TIMESTAMP WITH TIME ZONE NOT NULL,
        ends_at TIMESTAMP WITH TIME ZONE NOT NULL,
        venue TEXT DEFAULT '' NOT NULL,
        visibility TEXT NOT NULL,
        group_id TEXT,
        participants_visibility TEXT NOT NULL,
        status TEXT NOT NULL,
        cover_media_id TEXT,
        created_by TEXT NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id)
    )""",
    """CREATE INDEX ix_events_listing ON {s}.events (starts_at, id)""",
    """CREATE INDEX ix_events_organization ON {s}.events (organization_id)""",
    """CREATE TABLE {s}.ticket_types (
        id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        name TEXT NOT NULL,
        price INTEGER NOT NULL,
        currency TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        per_user_limit INTEGER,
        prepayment_amount INTEGER,
        sales_start TIMESTAMP WITH TIME ZONE,
        sales_end TIMESTAMP WITH TIME ZONE,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(event_id) REFERENCES {s}.events (id)
    )""",
    """CREATE INDEX ix_event_service_ticket_types_event_id ON {s}.ticket_types (event_id)""",
    """CREATE TABLE {s}.registrations (
        id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        ticket_type_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        status TEXT NOT NULL,
        payment_mode TEXT NOT NULL,
        amount INTEGER NOT NULL,
        currency TEXT NOT NULL,
        prepayment_amount INTEGER,
        refund_due BOOLEAN DEFAULT false NOT NULL,
        end_reason TEXT,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(event_id) REFERENCES {s}.events (id),
        FOREIGN KEY(ticket_type_id) REFERENCES {s}.ticket_types (id)
    )""",
    """CREATE INDEX ix_registrations_event_status ON {s}.registrations (event_id, status)""",
    """CREATE INDEX ix_registrations_user ON {s}.registrations (user_id, created_at)""",
    """CREATE TABLE {s}.reservations (
        id TEXT NOT NULL,
        registration_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        ticket_type_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        status TEXT NOT NULL,
        expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
        ended_at TIMESTAMP WITH TIME ZONE,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (registration_id),
        FOREIGN KEY(registration_id) REFERENCES {s}.registrations (id)
    )""",
    """CREATE INDEX ix_reservations_held ON {s}.reservations (event_id, expires_at)"""
    """ WHERE status = 'held'""",
    """CREATE TABLE {s}.checkins (
        registration_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        checked_in_by TEXT NOT NULL,
        checked_in_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (registration_id),
        FOREIGN KEY(registration_id) REFERENCES {s}.registrations (id)
    )""",
    """CREATE TABLE {s}.waitlist_entries (
        id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        ticket_type_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        status TEXT NOT NULL,
        registration_id TEXT,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (id),
        FOREIGN KEY(event_id) REFERENCES {s}.events (id),
        FOREIGN KEY(ticket_type_id) REFERENCES {s}.ticket_types (id)
    )""",
    """CREATE UNIQUE INDEX ux_waitlist_active ON {s}.waitlist_entries (event_id, user_id)"""
    """ WHERE status IN ('waiting', 'offered')""",
    """CREATE TABLE {s}.group_members (
        group_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        organization_id TEXT NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (group_id, user_id)
    )""",
    """CREATE TABLE {s}.idempotency_keys (
        user_id TEXT NOT NULL,
        key TEXT NOT NULL,
        registration_id TEXT NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (user_id, key)
    )""",
    """CREATE TABLE {s}.reminders_sent (
        event_id TEXT NOT NULL,
        offset_minutes INTEGER NOT NULL,
        sent_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (event_id, offset_minutes),
        FOREIGN KEY(event_id) REFERENCES {s}.events (id)
    )""",
]
TABLES = ["reminders_sent", "idempotency_keys", "group_members", "waitlist_entries",
          "checkins", "reservations", "registrations", "ticket_types", "events"]


def upgrade(schema: str) -> None:
    for statement in STATEMENTS:
        op.execute(statement.format(s=f'"{schema}"'))


def downgrade(schema: str) -> None:
    for table in TABLES:
        op.drop_table(table, schema=schema)
