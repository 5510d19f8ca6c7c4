"""the audit log of configuration changes and erasures (append-only), and API keys issued
through the API

Revision ID: sla_timer_0005
Revises: sla_timer_0004
"""

from alembic import op
from leadflow.migrations import create_api_keys, create_audit_log, drop_api_keys, drop_audit_log

revision = "sla_timer_0005"
down_revision = "sla_timer_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_log(op, "sla_timer")
    create_api_keys(op, "sla_timer")


def downgrade() -> None:
    drop_api_keys(op, "sla_timer")
    drop_audit_log(op, "sla_timer")
