"""the audit log of configuration changes and erasures (append-only), and API keys issued
through the API

Revision ID: feedback_0006
Revises: feedback_0005
"""

from alembic import op
from leadflow.migrations import create_api_keys, create_audit_log, drop_api_keys, drop_audit_log

revision = "feedback_0006"
down_revision = "feedback_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log(op, "feedback")
    create_api_keys(op, "feedback")


def downgrade() -> None:
    drop_api_keys(op, "feedback")
    drop_audit_log(op, "feedback")
