"""event service: every committed change to what anonymous event reads show is announced on
the ``afisha_reads_<schema>`` channel (``storage.event.read_changes_channel``), so the gateway
replicas' read caches can keep answers until they change.

A statement on ``events`` or ``ticket_types`` sends ``e:<event ids>`` (what an event shows);
one on ``registrations`` or ``reservations`` sends ``s:<event ids>`` (its seats). The ids are
comma-separated; ``*`` stands for "any event" when they would not fit in one notification.
Postgres delivers a notification only once its transaction commits.

Revision ID: event_0004
Revises: event_0003
"""

from alembic import op

from storage.event import read_changes_channel

revision = "event_0004"
down_revision = "event_0003"
branch_labels = None
depends_on = None

# TG_ARGV: channel, kind ("e" or "s"). The transition table is named "changed" by each trigger.
FUNCTION = """CREATE FUNCTION {s}.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids text;
BEGIN
  SELECT string_agg(DISTINCT {column}, ',') INTO ids FROM changed;
  IF ids IS NOT NULL THEN
    IF length(ids) > 7000 THEN ids := '*'; END IF;
    PERFORM pg_notify(TG_ARGV[0], TG_ARGV[1] || ':' || ids);
  END IF;
  RETURN NULL;
END $$"""
FUNCTIONS = {"announce_event_change": "id", "announce_event_row_change": "event_id"}
# table -> (function, kind, operations)
TRIGGERS = {
    "events": ("announce_event_change", "e", ("INSERT", "UPDATE", "DELETE")),
    "ticket_types": ("announce_event_row_change", "e", ("INSERT", "UPDATE", "DELETE")),
    "registrations": ("announce_event_row_change", "s", ("INSERT", "UPDATE", "DELETE")),
    "reservations": ("announce_event_row_change", "s", ("INSERT", "UPDATE", "DELETE")),
}


def upgrade(schema: str) -> None:
    s = f'"{schema}"'
    channel = read_changes_channel(schema).replace("'", "''")
    for name, column in FUNCTIONS.items():
        op.execute(FUNCTION.format(s=s, name=name, column=column))
    for table, (function, kind, operations) in TRIGGERS.items():
        for operation in operations:
            transition = "OLD" if operation == "DELETE" else "NEW"
            op.execute(
                f"CREATE TRIGGER read_change_{operation.lower()} AFTER {operation} ON {s}.{table} "
                f"REFERENCING {transition} TABLE AS changed FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {s}.{function}('{channel}', '{kind}')")


def downgrade(schema: str) -> None:
    s = f'"{schema}"'
    for table, (_, _, operations) in TRIGGERS.items():
        for operation in operations:
            op.execute(f"DROP TRIGGER read_change_{operation.lower()} ON {s}.{table}")
    for name in FUNCTIONS:
        op.execute(f"DROP FUNCTION {s}.{name}()")
