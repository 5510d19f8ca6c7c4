"""the policy this service applies, from the latest policy.published

Revision ID: sla_timer_0006
Revises: sla_timer_0005
"""

from alembic import op
from leadflow.publications import CURRENT_POLICY

revision = "sla_timer_0006"
down_revision = "sla_timer_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    CURRENT_POLICY.create_table(op, "sla_timer")


def downgrade() -> None:
    CURRENT_POLICY.drop_table(op, "sla_timer")
