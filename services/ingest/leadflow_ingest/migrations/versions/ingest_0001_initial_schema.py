"""initial schema

Revision ID: ingest_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from leadflow.migrations import create_kernel_tables, drop_kernel_tables
from sqlalchemy.dialects import postgresql

revision = "ingest_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables(op, "ingest")
    op.create_table(
        "idempotency",
        sa.Column("api_key", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column(
            "response", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
        sa.PrimaryKeyConstraint("api_key", "key"),
        schema="ingest",
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column(
            "snapshot", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False
        ),
        sa.Column("routable", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
        sa.UniqueConstraint("external_id"),
        schema="ingest",
    )
    op.create_table(
        "activities",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("page_category", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "properties", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["ingest.leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="ingest",
    )
    op.create_index(
        op.f("ix_ingest_activities_lead_id"),
        "activities",
        ["lead_id"],
        unique=False,
        schema="ingest",
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ingest_activities_lead_id"), table_name="activities", schema="ingest")
    op.drop_table("activities", schema="ingest")
    op.drop_table("leads", schema="ingest")
    op.drop_table("idempotency", schema="ingest")
    drop_kernel_tables(op, "ingest")
