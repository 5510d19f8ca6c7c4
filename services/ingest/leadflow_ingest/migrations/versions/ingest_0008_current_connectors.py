"""the CRM connectors changed through notify's API, from the latest connectors.published

Revision ID: ingest_0008
Revises: ingest_0007
"""

from alembic import op
from leadflow.publications import CURRENT_CONNECTORS

revision = "ingest_0008"
down_revision = "ingest_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    CURRENT_CONNECTORS.create_table(op, "ingest")


def downgrade() -> None:
    CURRENT_CONNECTORS.drop_table(op, "ingest")
