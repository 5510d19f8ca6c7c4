"""the policy this service applies, from the latest policy.published

Revision ID: scoring_0005
Revises: scoring_0004
"""

from alembic import op
from leadflow.migrations import create_current_policy, drop_current_policy

revision = "scoring_0005"
down_revision = "scoring_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_current_policy(op, "scoring")


def downgrade() -> None:
    drop_current_policy(op, "scoring")
