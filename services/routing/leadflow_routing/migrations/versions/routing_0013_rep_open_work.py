"""each rep's leads in open work, kept as a count instead of counted by every routing batch

Revision ID: routing_0013
Revises: routing_0012
"""

import sqlalchemy as sa
from alembic import op

revision = "routing_0013"
down_revision = "routing_0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rep_open_work",
        sa.Column("rep_id", sa.UUID(), nullable=False),
        sa.Column("open_leads", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("rep_id"),
        schema="routing",
    )
    op.execute(
        """
        INSERT INTO routing.rep_open_work (rep_id, open_leads)
        SELECT r.id, count(a.id)
        FROM routing.reps r
        LEFT JOIN routing.assignments a
            ON a.rep_id = r.id AND a.current AND a.closed_at IS NULL
        GROUP BY r.id
        """
    )


def downgrade() -> None:
    op.drop_table("rep_open_work", schema="routing")
