"""corrective plans as records: one open plan per party, linked to the missed periods, and actions

Revision ID: feedback_0011
Revises: feedback_0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "feedback_0011"
down_revision = "feedback_0010"
branch_labels = None
depends_on = None

_JSON = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "corrective_plans",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("party", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("periods", _JSON, nullable=False),
        sa.Column("missed", _JSON, nullable=False),
        sa.Column("opened_at", _AT, nullable=False),
        sa.Column("due_at", _AT, nullable=False),
        sa.Column("changed_at", _AT, nullable=False),
        sa.Column("policy_version", sa.Text()),
        sa.PrimaryKeyConstraint("id"),
        schema="feedback",
    )
    op.create_index(
        "uq_corrective_plans_open_party",
        "corrective_plans",
        ["party"],
        unique=True,
        schema="feedback",
        postgresql_where=sa.text("status IN ('open', 'in_progress')"),
    )
    op.create_table(
        "plan_actions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("plan_id", sa.UUID(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("due_at", _AT, nullable=False),
        sa.Column("done", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("done_at", _AT),
        sa.Column("created_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["feedback.corrective_plans.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        schema="feedback",
    )
    op.create_index(
        "ix_feedback_plan_actions_plan_id", "plan_actions", ["plan_id"], schema="feedback"
    )


def downgrade() -> None:
    op.drop_table("plan_actions", schema="feedback")
    op.drop_table("corrective_plans", schema="feedback")
