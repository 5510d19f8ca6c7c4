"""the policy this service applies, from the latest policy.published

Revision ID: scoring_0005
Revises: scoring_0004
"""

from alembic import op
from leadflow.publications import CURRENT_POLICY

revision = "scoring_0005"
down_revision = "scoring_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    CURRENT_POLICY.create_table(op, "scoring")


def downgrade() -> None:
    CURRENT_POLICY.drop_table(op, "scoring")
