"""the policy this service applies, from the latest policy.published

Revision ID: ingest_0007
Revises: ingest_0006
"""

from alembic import op
from leadflow.migrations import create_current_policy, drop_current_policy

revision = "ingest_0007"
down_revision = "ingest_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_current_policy(op, "ingest")


def downgrade() -> None:
    drop_current_policy(op, "ingest")
