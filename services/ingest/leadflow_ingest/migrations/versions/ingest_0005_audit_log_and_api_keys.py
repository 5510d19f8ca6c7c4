"""the audit log of configuration changes and erasures (append-only), and API keys issued
through the API

Revision ID: ingest_0005
Revises: ingest_0004
"""

from alembic import op
from leadflow.migrations import create_api_keys, create_audit_log, drop_api_keys, drop_audit_log

revision = "ingest_0005"
down_revision = "ingest_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log(op, "ingest")
    create_api_keys(op, "ingest")


def downgrade() -> None:
    drop_api_keys(op, "ingest")
    drop_audit_log(op, "ingest")
