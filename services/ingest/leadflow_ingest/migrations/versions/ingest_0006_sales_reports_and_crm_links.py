"""what sales tools reported back (each record once) and the CRM records linked to leads

Revision ID: ingest_0006
Revises: ingest_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0006"
down_revision = "ingest_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sales_reports",
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("record_id", sa.Text(), nullable=False),
        sa.Column("lead_id", sa.UUID()),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("system", "record_id"),
        schema="ingest",
    )
    op.create_index(
        "ix_ingest_sales_reports_lead_id", "sales_reports", ["lead_id"], schema="ingest"
    )
    op.create_table(
        "crm_links",
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("object_id", sa.Text(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("system", "object_id"),
        schema="ingest",
    )
    op.create_index("ix_ingest_crm_links_lead_id", "crm_links", ["lead_id"], schema="ingest")


def downgrade() -> None:
    op.drop_table("crm_links", schema="ingest")
    op.drop_table("sales_reports", schema="ingest")
