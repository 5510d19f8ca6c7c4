"""the policy this service applies, from the latest policy.published

Revision ID: routing_0012
Revises: routing_0011
"""

from alembic import op
from leadflow.migrations import create_current_policy, drop_current_policy

revision = "routing_0012"
down_revision = "routing_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_current_policy(op, "routing")


def downgrade() -> None:
    drop_current_policy(op, "routing")
