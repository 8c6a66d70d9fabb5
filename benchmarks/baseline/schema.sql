-- The baseline's tables: the rows Afisha's event service writes for a reservation
-- (registration, reservation, idempotency key, outbox event), plus the counter of seats taken
-- that the row-lock design keeps on the ticket type, plus what Afisha's payment and analytics
-- services write downstream of it (the pending payment, the recorded domain event), which a
-- monolith writes in the reservation's own transaction.
CREATE SCHEMA IF NOT EXISTS bench_baseline;
SET search_path TO bench_baseline;

CREATE TABLE IF NOT EXISTS events (
    id text PRIMARY KEY,
    organization_id text NOT NULL,
    title text NOT NULL,
    description text NOT NULL DEFAULT '',
    venue text NOT NULL DEFAULT '',
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ticket_types (
    id text PRIMARY KEY,
    event_id text NOT NULL REFERENCES events (id),
    name text NOT NULL,
    price integer NOT NULL,
    currency text NOT NULL,
    quantity integer NOT NULL,
    taken integer NOT NULL DEFAULT 0 CHECK (taken >= 0),
    per_user_limit integer,
    prepayment_amount integer
);
CREATE INDEX IF NOT EXISTS ix_ticket_types_event ON ticket_types (event_id);

CREATE TABLE IF NOT EXISTS registrations (
    id text PRIMARY KEY,
    event_id text NOT NULL REFERENCES events (id),
    ticket_type_id text NOT NULL REFERENCES ticket_types (id),
    user_id text NOT NULL,
    quantity integer NOT NULL,
    status text NOT NULL,
    payment_mode text NOT NULL,
    amount integer NOT NULL,
    currency text NOT NULL,
    prepayment_amount integer,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_registrations_type_user ON registrations (ticket_type_id, user_id);

CREATE TABLE IF NOT EXISTS reservations (
    id text PRIMARY KEY,
    registration_id text NOT NULL UNIQUE REFERENCES registrations (id),
    event_id text NOT NULL,
    ticket_type_id text NOT NULL,
    user_id text NOT NULL,
    quantity integer NOT NULL,
    status text NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id text NOT NULL,
    key text NOT NULL,
    registration_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE TABLE IF NOT EXISTS outbox (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE,
    type text NOT NULL,
    aggregate_id text NOT NULL,
    envelope jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);

-- A registration's pending payment, as payment_service.payments has it.
CREATE TABLE IF NOT EXISTS payments (
    id uuid PRIMARY KEY,
    registration_id text NOT NULL UNIQUE REFERENCES registrations (id),
    event_id text NOT NULL,
    organization_id text NOT NULL,
    user_id text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    amount bigint NOT NULL,
    currency text NOT NULL,
    provider text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_payments_event ON payments (event_id);

-- The analytics time series, as analytics_service.domain_events has it.
CREATE TABLE IF NOT EXISTS domain_events (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE,
    type text NOT NULL,
    producer text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    correlation_id text NOT NULL,
    event_id text,
    organization_id text,
    user_id text,
    data jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_domain_events_event_time ON domain_events (event_id, occurred_at);
