"""team directories and notices to people

Revision ID: notify_0002
Revises: notify_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "notify_0002"
down_revision = "notify_0001"
branch_labels = None
depends_on = None

_JSON = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())


def upgrade() -> None:
    op.create_table(
        "team_directory",
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("directory", _JSON, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id"),
        schema="notify",
    )
    op.create_table(
        "notices",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("person", _JSON, nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("timer_id", sa.UUID(), nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("notice", _JSON, nullable=False),
        sa.Column("state", sa.Text(), server_default="pending", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("timer_id", "level", "recipient", "channel", name="uq_notices_once"),
        schema="notify",
    )
    op.create_index(
        "ix_notices_due",
        "notices",
        ["next_attempt_at"],
        unique=False,
        schema="notify",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_notices_last_sent",
        "notices",
        ["recipient", "channel", "sent_at"],
        unique=False,
        schema="notify",
    )
    op.create_index(
        op.f("ix_notify_notices_lead_id"), "notices", ["lead_id"], unique=False, schema="notify"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_notify_notices_lead_id"), table_name="notices", schema="notify")
    op.drop_index("ix_notices_last_sent", table_name="notices", schema="notify")
    op.drop_index(
        "ix_notices_due",
        table_name="notices",
        schema="notify",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_table("notices", schema="notify")
    op.drop_table("team_directory", schema="notify")
