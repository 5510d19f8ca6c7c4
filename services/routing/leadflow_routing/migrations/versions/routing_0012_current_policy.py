"""the policy this service applies, from the latest policy.published

Revision ID: routing_0012
Revises: routing_0011
"""

from alembic import op
from leadflow.publications import CURRENT_POLICY

revision = "routing_0012"
down_revision = "routing_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    CURRENT_POLICY.create_table(op, "routing")


def downgrade() -> None:
    CURRENT_POLICY.drop_table(op, "routing")
