"""the audit log of configuration changes and erasures (append-only), and API keys issued
through the API

Revision ID: scoring_0004
Revises: scoring_0003
"""

from alembic import op
from leadflow.migrations import create_api_keys, create_audit_log, drop_api_keys, drop_audit_log

revision = "scoring_0004"
down_revision = "scoring_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log(op, "scoring")
    create_api_keys(op, "scoring")


def downgrade() -> None:
    drop_api_keys(op, "scoring")
    drop_audit_log(op, "scoring")
