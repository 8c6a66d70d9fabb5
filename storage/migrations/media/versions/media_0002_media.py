"""media service: the media table (one row per upload, its variants as JSON).

Revision ID: media_0002
Revises: media_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "media_0002"
down_revision = "media_0001"
branch_labels = None
depends_on = None


def upgrade(schema: str) -> None:
    uuid = pg.UUID(as_uuid=True)
    op.create_table(
        "media",
        sa.Column("id", uuid, primary_key=True),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("organization_id", uuid),
        sa.Column("uploader_id", uuid, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("failure_reason", sa.Text),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("file_name", sa.Text),
        sa.Column("object_key", sa.Text, nullable=False),
        sa.Column("variants", pg.JSONB, nullable=False, server_default="{}"),
        sa.Column("attached_event_id", uuid),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=schema,
    )
    op.create_index("ix_media_orphans", "media", ["created_at"], schema=schema)


def downgrade(schema: str) -> None:
    op.drop_table("media", schema=schema)
