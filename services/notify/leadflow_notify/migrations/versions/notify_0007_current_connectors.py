"""the CRM connectors changed through notify's API, from the latest connectors.published

Revision ID: notify_0007
Revises: notify_0006
"""

from alembic import op
from leadflow import current_connectors

revision = "notify_0007"
down_revision = "notify_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    current_connectors.create_table(op, "notify")


def downgrade() -> None:
    op.drop_table(current_connectors.TABLE, schema="notify")
