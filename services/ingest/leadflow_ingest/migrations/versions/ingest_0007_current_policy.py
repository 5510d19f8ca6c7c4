"""the policy this service applies, from the latest policy.published

Revision ID: ingest_0007
Revises: ingest_0006
"""

from alembic import op
from leadflow.publications import CURRENT_POLICY

revision = "ingest_0007"
down_revision = "ingest_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    CURRENT_POLICY.create_table(op, "ingest")


def downgrade() -> None:
    CURRENT_POLICY.drop_table(op, "ingest")
