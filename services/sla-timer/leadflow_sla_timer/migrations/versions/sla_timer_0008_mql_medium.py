"""period commitments: each MQL's source medium, so the source mix is judged as reported

Revision ID: sla_timer_0008
Revises: sla_timer_0007
"""

import sqlalchemy as sa
from alembic import op

revision = "sla_timer_0008"
down_revision = "sla_timer_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("mqls", sa.Column("medium", sa.Text()), schema="sla_timer")


def downgrade() -> None:
    op.drop_column("mqls", "medium", schema="sla_timer")
