"""user service: users, refresh tokens, organizations, requests, members, groups, invites.

Revision ID: user_0002
Revises: user_0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "user_0002"
down_revision = "user_0001"
branch_labels = None
depends_on = None

ID = pg.UUID(as_uuid=False)


def _created() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                     server_default=sa.func.now())


def _fk(column: str, target: str, schema: str, **kw: Any) -> sa.Column[object]:
    return sa.Column(column, ID, sa.ForeignKey(f"{schema}.{target}", ondelete="CASCADE"), **kw)


def upgrade(schema: str) -> None:
    op.create_table(
        "users",
        sa.Column("id", ID, primary_key=True),
        sa.Column("email", sa.Text, unique=True),
        sa.Column("password_hash", sa.Text),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("locale", sa.Text),
        sa.Column("telegram_id", sa.BigInteger, unique=True),
        sa.Column("telegram_username", sa.Text),
        sa.Column("telegram_photo_url", sa.Text),
        sa.Column("telegram_chat_id", sa.BigInteger),
        _created(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("email IS NOT NULL OR telegram_id IS NOT NULL", name="ck_users_login"),
        schema=schema,
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", ID, primary_key=True),
        sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("family_id", ID, nullable=False, index=True),
        _fk("user_id", "users.id", schema, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        _created(),
        schema=schema,
    )
    op.create_table(
        "organization_requests",
        sa.Column("id", ID, primary_key=True),
        sa.Column("requester_id", ID, sa.ForeignKey(f"{schema}.users.id"), nullable=False,
                  index=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reviewed_by", ID),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.Column("reason", sa.Text),
        sa.Column("organization_id", ID),
        _created(),
        sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')",
                           name="ck_organization_requests_status"),
        schema=schema,
    )
    op.create_table(
        "organizations",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("request_id", ID, sa.ForeignKey(f"{schema}.organization_requests.id"),
                  unique=True),
        _created(),
        schema=schema,
    )
    op.create_index("ux_organizations_name", "organizations", [sa.text("lower(name)")],
                    unique=True, schema=schema)
    op.create_table(
        "organization_members",
        _fk("organization_id", "organizations.id", schema, primary_key=True),
        _fk("user_id", "users.id", schema, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        _created(),
        sa.CheckConstraint("role IN ('owner', 'moderator')", name="ck_organization_members_role"),
        schema=schema,
    )
    op.create_index("ix_organization_members_user", "organization_members", ["user_id"],
                    schema=schema)
    op.create_table(
        "groups",
        sa.Column("id", ID, primary_key=True),
        _fk("organization_id", "organizations.id", schema, nullable=False, index=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_by", ID, nullable=False),
        _created(),
        schema=schema,
    )
    op.create_index("ux_groups_organization_name", "groups",
                    ["organization_id", sa.text("lower(name)")], unique=True, schema=schema)
    op.create_table(
        "group_members",
        _fk("group_id", "groups.id", schema, primary_key=True),
        _fk("user_id", "users.id", schema, primary_key=True),
        _created(),
        schema=schema,
    )
    op.create_table(
        "invites",
        sa.Column("id", ID, primary_key=True),
        sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
        _fk("organization_id", "organizations.id", schema, nullable=False),
        _fk("group_id", "groups.id", schema),
        sa.Column("role", sa.Text),
        sa.Column("created_by", ID, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_by", ID),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        _created(),
        sa.CheckConstraint("(group_id IS NULL) <> (role IS NULL)", name="ck_invites_kind"),
        schema=schema,
    )


def downgrade(schema: str) -> None:
    for table in ("invites", "group_members", "groups", "organization_members",
                  "organizations", "organization_requests", "refresh_tokens", "users"):
        op.drop_table(table, schema=schema)
