"""rules, team strategies, rep working hours, account owners, closed assignments

Revision ID: routing_0002
Revises: routing_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "routing_0002"
down_revision = "routing_0001"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())


def upgrade() -> None:
    op.add_column(
        "teams",
        sa.Column("strategy", sa.Text(), server_default="round_robin", nullable=False),
        schema="routing",
    )
    op.add_column("reps", sa.Column("timezone", sa.Text()), schema="routing")
    op.add_column("reps", sa.Column("working_hours", JSONB), schema="routing")
    op.add_column(
        "assignments", sa.Column("closed_at", sa.DateTime(timezone=True)), schema="routing"
    )
    op.create_table(
        "rules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("conditions", JSONB, nullable=False),
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
        sa.ForeignKeyConstraint(["team_id"], ["routing.teams.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        schema="routing",
    )
    op.create_table(
        "accounts",
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("rep_id", sa.UUID(), nullable=False),
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["rep_id"], ["routing.reps.id"]),
        sa.ForeignKeyConstraint(["team_id"], ["routing.teams.id"]),
        sa.PrimaryKeyConstraint("domain"),
        schema="routing",
    )


def downgrade() -> None:
    op.drop_table("accounts", schema="routing")
    op.drop_table("rules", schema="routing")
    op.drop_column("assignments", "closed_at", schema="routing")
    op.drop_column("reps", "working_hours", schema="routing")
    op.drop_column("reps", "timezone", schema="routing")
    op.drop_column("teams", "strategy", schema="routing")
