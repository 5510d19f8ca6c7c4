"""the unassigned queue: leads waiting for an eligible rep

Revision ID: routing_0009
Revises: routing_0008
"""

import sqlalchemy as sa
from alembic import op

revision = "routing_0009"
down_revision = "routing_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unassigned",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("team_id", sa.UUID(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("routing_reason", sa.Text(), nullable=False),
        sa.Column("away_from", sa.UUID(), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["routing.teams.id"]),
        sa.PrimaryKeyConstraint("lead_id"),
        sa.UniqueConstraint("seq"),
        schema="routing",
    )


def downgrade() -> None:
    op.drop_table("unassigned", schema="routing")
