"""Tables of the user service (schema ``user_service``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from storage.common import inbox_table, outbox_table, service_metadata

metadata = service_metadata("user")
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)


def _created() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False,
                  server_default=func.now())


users = Table(
    "users", metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("email", Text, unique=True),
    Column("password_hash", Text),
    Column("display_name", Text, nullable=False),
    Column("locale", Text),
    Column("telegram_id", BigInteger, unique=True),
    Column("telegram_username", Text),
    Column("telegram_photo_url", Text),
    Column("telegram_chat_id", BigInteger),
    _created(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

refresh_tokens = Table(
    "refresh_tokens", metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("family_id", UUID(as_uuid=False), nullable=False, index=True),
    Column("user_id", UUID(as_uuid=False), ForeignKey("users.id", ondelete="CASCADE"),
           nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    _created(),
)

organization_requests = Table(
    "organization_requests", metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("requester_id", UUID(as_uuid=False), ForeignKey("users.id"), nullable=False,
           index=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("reviewed_by", UUID(as_uuid=False)),
    Column("reviewed_at", DateTime(timezone=True)),
    Column("reason", Text),
    Column("organization_id", UUID(as_uuid=False)),
    _created(),
)

organizations = Table(
    "organizations", metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("request_id", UUID(as_uuid=False), ForeignKey("organization_requests.id"),
           unique=True),
    _created(),
)

organization_members = Table(
    "organization_members", metadata,
    Column("organization_id", UUID(as_uuid=False),
           ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", UUID(as_uuid=False), ForeignKey("users.id", ondelete="CASCADE"),
           primary_key=True),
    Column("role", Text, nullable=False),
    _created(),
    Index("ix_organization_members_user", "user_id"),
)

groups = Table(
    "groups", metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("organization_id", UUID(as_uuid=False),
           ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_by", UUID(as_uuid=False), nullable=False),
    _created(),
)

group_members = Table(
    "group_members", metadata,
    Column("group_id", UUID(as_uuid=False), ForeignKey("groups.id", ondelete="CASCADE"),
           primary_key=True),
    Column("user_id", UUID(as_uuid=False), ForeignKey("users.id", ondelete="CASCADE"),
           primary_key=True),
    _created(),
)

invites = Table(
    "invites", metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("organization_id", UUID(as_uuid=False),
           ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False),
    Column("group_id", UUID(as_uuid=False), ForeignKey("groups.id", ondelete="CASCADE")),
    Column("role", Text),
    Column("created_by", UUID(as_uuid=False), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("accepted_by", UUID(as_uuid=False)),
    Column("accepted_at", DateTime(timezone=True)),
    _created(),
)

Index("ux_organizations_name", func.lower(organizations.c.name), unique=True)
Index("ux_groups_organization_name", groups.c.organization_id, func.lower(groups.c.name),
      unique=True)
