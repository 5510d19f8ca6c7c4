"""worklists and deletions: reps' out of office ends by itself, the SLA clocks of open leads,
assignments keep the ids of a team or rep deleted since

Revision ID: routing_0011
Revises: routing_0010
"""

import sqlalchemy as sa
from alembic import op

revision = "routing_0011"
down_revision = "routing_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "reps",
        sa.Column("out_of_office_until", sa.DateTime(timezone=True), nullable=True),
        schema="routing",
    )
    op.drop_constraint("assignments_team_id_fkey", "assignments", schema="routing")
    op.drop_constraint("assignments_rep_id_fkey", "assignments", schema="routing")
    op.create_index(
        "ix_assignments_open_by_team",
        "assignments",
        ["team_id"],
        schema="routing",
        postgresql_where=sa.text("current AND closed_at IS NULL"),
    )
    op.create_table(
        "lead_clocks",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("sla", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.Text(), server_default="open", nullable=False),
        sa.PrimaryKeyConstraint("lead_id", "sla"),
        schema="routing",
    )


def downgrade() -> None:
    op.drop_table("lead_clocks", schema="routing")
    op.drop_index("ix_assignments_open_by_team", "assignments", schema="routing")
    op.create_foreign_key(
        "assignments_rep_id_fkey",
        "assignments",
        "reps",
        ["rep_id"],
        ["id"],
        source_schema="routing",
        referent_schema="routing",
    )
    op.create_foreign_key(
        "assignments_team_id_fkey",
        "assignments",
        "teams",
        ["team_id"],
        ["id"],
        source_schema="routing",
        referent_schema="routing",
    )
    op.drop_column("reps", "out_of_office_until", schema="routing")
