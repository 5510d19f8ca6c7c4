"""index of each rep's assignments by time

Revision ID: routing_0005
Revises: routing_0004
"""

from alembic import op

revision = "routing_0005"
down_revision = "routing_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each rep's last assignment, read with the reps of every team a routing batch decides for:
    # one short index probe per rep, whatever the history grows to.
    op.create_index(
        "ix_assignments_rep_created",
        "assignments",
        ["rep_id", "created_at"],
        schema="routing",
    )


def downgrade() -> None:
    op.drop_index("ix_assignments_rep_created", table_name="assignments", schema="routing")
