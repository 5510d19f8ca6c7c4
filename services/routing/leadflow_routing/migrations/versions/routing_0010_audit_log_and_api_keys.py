"""the audit log of configuration changes and erasures (append-only), and API keys issued
through the API

Revision ID: routing_0010
Revises: routing_0009
"""

from alembic import op
from leadflow.migrations import create_api_keys, create_audit_log, drop_api_keys, drop_audit_log

revision = "routing_0010"
down_revision = "routing_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log(op, "routing")
    create_api_keys(op, "routing")


def downgrade() -> None:
    drop_api_keys(op, "routing")
    drop_audit_log(op, "routing")
