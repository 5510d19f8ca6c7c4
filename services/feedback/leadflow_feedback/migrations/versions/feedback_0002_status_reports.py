"""status changes with idempotency, read model for reports and calibration

Revision ID: feedback_0002
Revises: feedback_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "feedback_0002"
down_revision = "feedback_0001"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())
LEAD_COLUMNS = (
    ("reason", sa.Text()),
    ("role", sa.Text()),
    ("fit", sa.Integer()),
    ("engagement", sa.Float()),
    ("intent_tier", sa.Integer()),
    ("scored_at", sa.DateTime(timezone=True)),
    ("mql_fit", sa.Integer()),
    ("mql_engagement", sa.Float()),
    ("mql_intent_tier", sa.Integer()),
    ("in_target", sa.Boolean()),
    ("mql_context_missing", JSONB),
    ("context_missing", JSONB),
    ("calendar", JSONB),
    ("sla_due_at", sa.DateTime(timezone=True)),
    ("sla_response_seconds", sa.Float()),
)


def upgrade() -> None:
    for name, type_ in LEAD_COLUMNS:
        op.add_column("leads", sa.Column(name, type_, nullable=True), schema="feedback")
    op.add_column(
        "leads",
        sa.Column("sla_breached", sa.Boolean(), server_default=sa.false(), nullable=False),
        schema="feedback",
    )
    op.create_index(
        op.f("ix_feedback_leads_mql_at"), "leads", ["mql_at"], unique=False, schema="feedback"
    )
    op.create_table(
        "idempotency",
        sa.Column("api_key", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), server_default="", nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", JSONB, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
        sa.PrimaryKeyConstraint("api_key", "key"),
        schema="feedback",
    )


def downgrade() -> None:
    op.drop_table("idempotency", schema="feedback")
    op.drop_index(op.f("ix_feedback_leads_mql_at"), table_name="leads", schema="feedback")
    op.drop_column("leads", "sla_breached", schema="feedback")
    for name, _ in reversed(LEAD_COLUMNS):
        op.drop_column("leads", name, schema="feedback")
