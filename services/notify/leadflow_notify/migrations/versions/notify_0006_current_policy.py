"""the policy this service applies, from the latest policy.published

Revision ID: notify_0006
Revises: notify_0005
"""

from alembic import op
from leadflow.migrations import create_current_policy, drop_current_policy

revision = "notify_0006"
down_revision = "notify_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_current_policy(op, "notify")


def downgrade() -> None:
    drop_current_policy(op, "notify")
