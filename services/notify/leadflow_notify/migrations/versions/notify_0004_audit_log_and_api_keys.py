"""the audit log of configuration changes and erasures (append-only), and API keys issued
through the API

Revision ID: notify_0004
Revises: notify_0003
"""

from alembic import op
from leadflow.migrations import create_api_keys, create_audit_log, drop_api_keys, drop_audit_log

revision = "notify_0004"
down_revision = "notify_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log(op, "notify")
    create_api_keys(op, "notify")


def downgrade() -> None:
    drop_api_keys(op, "notify")
    drop_audit_log(op, "notify")
