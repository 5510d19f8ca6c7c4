"""the policy this service applies, from the latest policy.published

Revision ID: feedback_0009
Revises: feedback_0008
"""

from alembic import op
from leadflow.migrations import create_current_policy, drop_current_policy

revision = "feedback_0009"
down_revision = "feedback_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_current_policy(op, "feedback")


def downgrade() -> None:
    drop_current_policy(op, "feedback")
