"""the policy this service applies, from the latest policy.published

Revision ID: feedback_0009
Revises: feedback_0008
"""

from alembic import op
from leadflow.publications import CURRENT_POLICY

revision = "feedback_0009"
down_revision = "feedback_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    CURRENT_POLICY.create_table(op, "feedback")


def downgrade() -> None:
    CURRENT_POLICY.drop_table(op, "feedback")
