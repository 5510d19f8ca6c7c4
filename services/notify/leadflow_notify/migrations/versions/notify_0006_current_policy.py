"""the policy this service applies, from the latest policy.published

Revision ID: notify_0006
Revises: notify_0005
"""

from alembic import op
from leadflow.publications import CURRENT_POLICY

revision = "notify_0006"
down_revision = "notify_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    CURRENT_POLICY.create_table(op, "notify")


def downgrade() -> None:
    CURRENT_POLICY.drop_table(op, "notify")
