"""the CRM connectors changed through notify's API, from the latest connectors.published

Revision ID: notify_0007
Revises: notify_0006
"""

from alembic import op
from leadflow.publications import CURRENT_CONNECTORS

revision = "notify_0007"
down_revision = "notify_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    CURRENT_CONNECTORS.create_table(op, "notify")


def downgrade() -> None:
    CURRENT_CONNECTORS.drop_table(op, "notify")
