"""the policy this service applies, from the latest policy.published

Revision ID: sla_timer_0006
Revises: sla_timer_0005
"""

from alembic import op
from leadflow.migrations import create_current_policy, drop_current_policy

revision = "sla_timer_0006"
down_revision = "sla_timer_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_current_policy(op, "sla_timer")


def downgrade() -> None:
    drop_current_policy(op, "sla_timer")
