"""each team's reps as routing published them, for the planner's sales capacity

Revision ID: feedback_0010
Revises: feedback_0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "feedback_0010"
down_revision = "feedback_0009"
branch_labels = None
depends_on = None

_JSON = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())


def upgrade() -> None:
    op.create_table(
        "team_directory",
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("team", sa.Text(), nullable=False),
        sa.Column("reps", _JSON, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("team_id"),
        schema="feedback",
    )


def downgrade() -> None:
    op.drop_table("team_directory", schema="feedback")
