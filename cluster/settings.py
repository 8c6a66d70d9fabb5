"""Platform settings: every knob is an ``AFISHA_*`` environment variable (or a line in ``.env``).

Unset values mean the embedded defaults: embedded PostgreSQL in the data directory, the
in-cluster event transport, an in-process rate limiter, a local-directory object store and a
log-only Telegram sender.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SERVICES: tuple[str, ...] = ("user", "event", "payment", "notification", "media", "analytics")

# The Serve application and its deployment names (cluster/app.py deploys them under these; the
# embedded transport finds the consuming replicas by them).
APP_NAME = "afisha"
GATEWAY_DEPLOYMENT = "Gateway"


# Settings that may carry a password inside a URL: kept as text, shown without the password.
URL_FIELDS = frozenset({"database_url", "amqp_url", "redis_url",
                        *(f"{s}_database_url" for s in SERVICES)})


def deployment_of(service: str) -> str:
    """The Serve deployment of a service, e.g. ``payment`` -> ``PaymentService``."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    return f"{service.capitalize()}Service"


def schema_of(service: str) -> str:
    """The PostgreSQL schema a service owns, e.g. ``payment`` -> ``payment_service``."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    return f"{service}_service"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AFISHA_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Databases: one URL for all services, or one per service (the per-service one wins).
    database_url: str | None = None
    user_database_url: str | None = None
    event_database_url: str | None = None
    payment_database_url: str | None = None
    notification_database_url: str | None = None
    media_database_url: str | None = None
    analytics_database_url: str | None = None
    database_pool_size: int = Field(default=5, ge=1)

    # Real services; unset means the embedded counterpart.
    amqp_url: str | None = None
    amqp_exchange: str = "afisha.events"
    # Messaging: deliveries of a failing message before it is dead-lettered; relay pacing.
    message_delivery_limit: int = Field(default=5, ge=1)
    message_retry_backoff_seconds: float = Field(default=0.2, ge=0)
    amqp_prefetch: int = Field(default=256, ge=1)
    # A consumer applies up to this many arrived messages in one transaction, waiting this long
    # after the first for more to arrive (a short linger makes bigger batches in a burst).
    consumer_batch_size: int = Field(default=200, ge=1)
    consumer_linger_ms: float = Field(default=20, ge=0)
    # The services whose work is downstream of a sale (payment, notification, media, analytics)
    # run at this niceness, so in a burst they lag instead of taking CPU from the sale (0 = as
    # the rest).
    background_niceness: int = Field(default=10, ge=0, le=19)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    # Loops woken when work arrives look anyway this often: outbox relays and the notification
    # sender (woken by PostgreSQL NOTIFY) while their LISTEN connection is up, else every poll
    # interval above; the sandbox's webhook deliverer (woken by a checkout) while nothing is due.
    listening_poll_seconds: float = Field(default=30.0, gt=0)
    outbox_batch_size: int = Field(default=200, ge=1)
    # A relay woken by a first new row waits this long for more to join its batch.
    outbox_linger_ms: float = Field(default=20, ge=0)
    outbox_retention_hours: float = Field(default=168, gt=0)
    redis_url: str | None = None
    s3_endpoint: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "afisha-media"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    # Media: "local" keeps objects under <data_dir>/media; "s3" is MinIO/S3 (AFISHA_S3_*).
    # "auto" picks s3 when AFISHA_S3_ENDPOINT is set.
    media_store: Literal["auto", "local", "s3"] = "auto"
    media_max_pixels: int = Field(default=40_000_000, ge=1)
    media_max_image_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    media_max_document_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    media_orphan_hours: float = Field(default=24, gt=0)
    media_sweep_seconds: float = Field(default=3600, gt=0)
    # Signs the local store's /media-files URLs (falls back to the JWT secret).
    media_signing_key: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_bot_username: str = "afisha_bot"
    telegram_api_url: str = "https://api.telegram.org"
    # Notification sender: messages per wall-clock second over the whole cluster (Telegram
    # allows about 30), queued rows per drain, and the secret of the webhook (derived if unset).
    telegram_max_per_second: int = Field(default=25, ge=1)
    notification_batch_size: int = Field(default=100, ge=1)
    notification_poll_seconds: float = Field(default=0.5, gt=0)
    telegram_webhook_secret: SecretStr | None = None

    # Identity.
    admin_emails: Annotated[list[str], NoDecode] = Field(default_factory=list)
    jwt_algorithm: Literal["HS256", "RS256", "ES256", "EdDSA"] = "HS256"
    jwt_secret: SecretStr | None = None
    jwt_private_key: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_issuer: str = "afisha"
    jwt_audience: str = "afisha-api"
    # Signs ticket codes (their QR), apart from the JWT key so rotating that key keeps tickets.
    ticket_signing_key: SecretStr | None = None
    access_token_ttl_seconds: int = Field(default=900, ge=30)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    telegram_auth_max_age_seconds: int = Field(default=24 * 3600, ge=1)
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_ip: int = Field(default=50, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)
    invite_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    # HTTP and Ray.
    http_host: str = "127.0.0.1"
    # Trusted reverse proxies in front of the gateway: with N > 0 the client address (rate
    # limits, login throttling) is the N-th entry from the right of X-Forwarded-For.
    forwarded_for_hops: int = Field(default=0, ge=0)
    http_port: int = Field(default=8080, ge=1, le=65535)
    # The Ray dashboard of a local head: off, a platform at rest runs 11 processes fewer.
    ray_dashboard: bool = False
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8265, ge=1, le=65535)
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    data_dir: Path = Path("var")
    log_level: str = "INFO"

    # Domain.
    reservation_ttl_seconds: int = Field(default=900, ge=1)
    waitlist_offer_ttl_seconds: int = Field(default=900, ge=1)
    # Inventory hosts (actors.host): how many shared hosts own the events' inventories; an
    # event's owner leaves memory after this long idle; a host writes one batch at a time, each
    # holding every decision made while the previous one was written (and within the batch
    # window, 0: none waited for); a caller has at most ``inventory_client_calls_in_flight``
    # calls to a host at once, and the reservations arriving meanwhile (and within its batch
    # window) leave together in the next; CPU reserved by each host.
    inventory_hosts: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    inventory_idle_seconds: float = Field(default=300, gt=0)
    inventory_batch_window_ms: float = Field(default=0, ge=0)
    inventory_client_batch_ms: float = Field(default=0, ge=0)
    inventory_client_calls_in_flight: int = Field(default=1, ge=1)
    inventory_num_cpus: float = Field(default=0, ge=0)
    # Idempotency keys an event's owner keeps in memory (the newest); a retry of an older key
    # is answered from Postgres.
    inventory_keys_in_memory: int = Field(default=10_000, ge=1)
    # Entries of each in-memory map a replica keeps of what requests bring (events it has seen,
    # verified tokens, inventory host handles, in-process rate-limit and login counters): the
    # least recently used leave first and are looked up again when needed.
    memory_cache_entries: int = Field(default=100_000, ge=1)
    reservation_sweep_seconds: float = Field(default=30, gt=0)
    # event.reminder is published this many minutes before an event starts (comma-separated).
    event_reminder_offsets_minutes: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [1440, 60])
    require_services: bool = False
    rate_limit_auth_per_minute: int = Field(default=20, ge=0)
    rate_limit_reserve_per_minute: int = Field(default=30, ge=0)
    rate_limit_default_per_minute: int = Field(default=600, ge=0)
    rate_limit_webhook_per_minute: int = Field(default=6000, ge=0)  # per provider, not per IP
    # POST /analytics/track per client (IP) and minute (each request carries up to 50 items).
    rate_limit_track_per_minute: int = Field(default=120, ge=0)
    # When Redis is configured but unreachable: True lets requests through unlimited (logged),
    # False answers 503 until Redis is back.
    rate_limit_fail_open: bool = True
    # Public GET /events and /events/{id} answers kept in Redis this long; 0 = no cache.
    response_cache_ttl_seconds: int = Field(default=5, ge=0)
    # Each gateway replica keeps anonymous GET /events, /events/{id} and
    # /events/{id}/ticket-types answers in memory this long (0 = off); its own writes drop the
    # answers they change at once, other replicas' writes show within this time.
    local_cache_ttl_seconds: float = Field(default=1.0, ge=0, le=60)
    # ... and up to this long while it hears the event service's read changes from Postgres
    # (a change drops an event's answers; seats changed show within local_cache_ttl_seconds).
    local_cache_max_seconds: float = Field(default=60.0, ge=0, le=3600)
    # /actuator/prometheus answers requests from these networks, or bearing this token.
    metrics_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    metrics_token: SecretStr | None = None
    # Largest request body the gateway reads (413 problem past it); uploads have their own limits.
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Namespace of every Redis key the platform writes (rate limits, login throttling, cache).
    redis_key_prefix: str = "afisha"

    # Payments.
    # Who takes payments. Unset, `afisha run` on an embedded database uses the sandbox (whose
    # checkout lets payers mark their own payments paid); anything else must choose.
    payment_provider: Literal["sandbox", "yookassa"] | None = None
    public_url: str | None = None
    sandbox_webhook_secret: SecretStr | None = None
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    yookassa_shop_id: str | None = None
    yookassa_secret_key: SecretStr | None = None
    yookassa_api_url: str = "https://api.yookassa.ru/v3"
    remainder_due_hours_before_start: int = Field(default=48, ge=0)
    remainder_reminder_hours: int = Field(default=24, ge=0)
    payment_sweep_seconds: float = Field(default=60, gt=0)
    # Refund intents left by a crash or an unreachable provider are retried this often.
    refund_sweep_seconds: float = Field(default=10, gt=0)

    # Analytics: signed links to the dashboard page and to export downloads (HMAC key derived
    # from the JWT secret unless set), how long they stay valid, partitions made ahead.
    analytics_signing_secret: SecretStr | None = None
    analytics_link_ttl_seconds: int = Field(default=3600, ge=60)
    analytics_partitions_ahead_months: int = Field(default=2, ge=0)
    analytics_sweep_seconds: float = Field(default=3600, gt=0)
    # An export whose worker has not written a heartbeat for this long (its replica died) is
    # taken over by another replica's export sweep and written again from the start.
    analytics_export_stale_seconds: float = Field(default=60, gt=0)

    # Replica sizing (fractions of a CPU; a replica reserves 1 CPU unless told otherwise).
    gateway_replicas: int = Field(default=1, ge=1)
    gateway_num_cpus: float = Field(default=0.2, ge=0)
    service_num_cpus: float = Field(default=0.1, ge=0)
    # Requests a replica works on at once (Serve's default is 5). The gateway's concurrent
    # reservations are what the inventory actors batch into one commit, so it needs many.
    gateway_max_ongoing_requests: int = Field(default=512, ge=1)
    service_max_ongoing_requests: int = Field(default=128, ge=1)
    # Serve's access log: a line for every request to every replica, the calls between
    # services included. Off by default (the gateway's Prometheus metrics count requests by
    # route and status, and every log line carries the correlation id).
    serve_access_log: bool = False

    # Autoscaling (Serve's autoscaling_config) of the gateway and the busy services (event,
    # payment, analytics): on when a maximum above the minimum is set; the minimum is
    # AFISHA_GATEWAY_REPLICAS for the gateway and 1 for a service.
    gateway_max_replicas: int | None = Field(default=None, ge=1)
    service_max_replicas: int | None = Field(default=None, ge=1)
    gateway_target_ongoing_requests: float = Field(default=128, gt=0)
    service_target_ongoing_requests: float = Field(default=32, gt=0)

    # Placement on a multi-node cluster (all off by default, so one node needs nothing):
    # at most this many gateway replicas on one node; inventory hosts scheduled with Ray's
    # SPREAD strategy; the consumers (payment, notification, media, analytics) placed only on
    # nodes offering this custom resource (e.g. ``afisha_worker``), taking this much of it.
    gateway_max_replicas_per_node: int | None = Field(default=None, ge=1)
    # Where Serve runs its HTTP proxies: every node, or only the head (several nodes on one
    # machine would otherwise all bind AFISHA_HTTP_PORT).
    proxy_location: Literal["EveryNode", "HeadOnly"] = "EveryNode"
    inventory_spread: bool = False
    consumer_resource: str | None = None
    consumer_resource_amount: float = Field(default=0.001, gt=0)

    # Calls between deployments (serve.common.clients): no answer within this is a 503.
    service_call_timeout_seconds: float = Field(default=30, gt=0)

    @field_validator("admin_emails", mode="before")
    @classmethod
    def _split_emails(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("metrics_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("event_reminder_offsets_minutes", mode="before")
    @classmethod
    def _split_offsets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [int(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url", "user_database_url", "event_database_url",
                     "payment_database_url", "notification_database_url",
                     "media_database_url", "analytics_database_url", mode="before")
    @classmethod
    def _asyncpg_driver(cls, value: Any) -> Any:
        return normalize_database_url(value) if isinstance(value, str) and value else value or None

    def database_url_for(self, service: str) -> str:
        """The SQLAlchemy URL of a service's database; raises when none is configured."""
        schema_of(service)
        url = getattr(self, f"{service}_database_url") or self.database_url
        if not url:
            raise LookupError(
                f"no database configured for the {service} service: set AFISHA_DATABASE_URL "
                f"or AFISHA_{service.upper()}_DATABASE_URL"
            )
        return str(url)

    @property
    def api_base_url(self) -> str:
        """Where this platform's HTTP API is reached (links, webhook targets)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::") else self.http_host
        return f"http://{host}:{self.http_port}"

    def has_database(self) -> bool:
        return self.database_url is not None or all(
            getattr(self, f"{s}_database_url") for s in SERVICES
        )

    @property
    def transport(self) -> Literal["rabbitmq", "embedded"]:
        return "rabbitmq" if self.amqp_url else "embedded"

    def to_runtime(self) -> dict[str, Any]:
        """Plain data handed to every deployment (settings are resolved once, in the driver);
        the only place secrets are unwrapped as a whole, to travel to the replicas."""
        data = self.model_dump(mode="json")
        for name in secret_fields():
            value = getattr(self, name)
            data[name] = value.get_secret_value() if value is not None else None
        return data

    def __repr_args__(self) -> Any:
        """What ``repr``/``str`` show: secrets as ``**********``, URLs without passwords."""
        for name, value in super().__repr_args__():
            yield name, (without_password(value) if name in URL_FIELDS and value else value)

    @classmethod
    def from_runtime(cls, data: dict[str, Any]) -> Settings:
        return cls.model_validate(data)


def secret_fields() -> list[str]:
    """The settings that are secrets (``SecretStr``): never logged, shown or put in a config."""
    return [name for name, info in Settings.model_fields.items()
            if "SecretStr" in str(info.annotation)]


def reveal(secret: SecretStr | None) -> str | None:
    """A secret's text, where it is used (signing, verifying, connecting)."""
    return None if secret is None else secret.get_secret_value()


def has_password(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.password) or "password" in parse_qs(parts.query)


def without_password(url: str) -> str:
    """``url`` with its password (in the authority or a ``password`` query item) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = "&".join("password=***" if item.split("=", 1)[0] == "password" else item
                     for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def normalize_database_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` URLs and select the asyncpg driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
