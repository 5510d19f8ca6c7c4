"""team leads, managers and team channels; how reps are reached

Revision ID: routing_0007
Revises: routing_0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "routing_0007"
down_revision = "routing_0006"
branch_labels = None
depends_on = None

_JSON = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())


def upgrade() -> None:
    op.add_column("teams", sa.Column("team_lead", _JSON, nullable=True), schema="routing")
    op.add_column("teams", sa.Column("manager", _JSON, nullable=True), schema="routing")
    op.add_column(
        "teams", sa.Column("slack_webhook_url", sa.Text(), nullable=True), schema="routing"
    )
    op.add_column(
        "teams", sa.Column("teams_webhook_url", sa.Text(), nullable=True), schema="routing"
    )
    op.add_column("reps", sa.Column("slack_member_id", sa.Text(), nullable=True), schema="routing")
    op.add_column("reps", sa.Column("teams_upn", sa.Text(), nullable=True), schema="routing")
    op.add_column(
        "reps",
        sa.Column("language", sa.Text(), server_default="en", nullable=False),
        schema="routing",
    )


def downgrade() -> None:
    for column in ("language", "teams_upn", "slack_member_id"):
        op.drop_column("reps", column, schema="routing")
    for column in ("teams_webhook_url", "slack_webhook_url", "manager", "team_lead"):
        op.drop_column("teams", column, schema="routing")
