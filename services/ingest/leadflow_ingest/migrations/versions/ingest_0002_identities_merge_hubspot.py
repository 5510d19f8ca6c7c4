"""identities, merges, request hashes for idempotency, HubSpot staging

Revision ID: ingest_0002
Revises: ingest_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "ingest_0002"
down_revision = "ingest_0001"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())


def upgrade() -> None:
    op.alter_column("leads", "email", nullable=True, schema="ingest")
    op.add_column("leads", sa.Column("owner_source", sa.Text()), schema="ingest")
    op.add_column("leads", sa.Column("merged_into", sa.UUID()), schema="ingest")
    op.create_index("ix_ingest_leads_merged_into", "leads", ["merged_into"], schema="ingest")
    op.create_table(
        "lead_aliases",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("merged_from", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value"),
        schema="ingest",
    )
    op.create_index("ix_ingest_lead_aliases_lead_id", "lead_aliases", ["lead_id"], schema="ingest")
    op.add_column(
        "idempotency",
        sa.Column("request_hash", sa.Text(), server_default="", nullable=False),
        schema="ingest",
    )
    op.create_table(
        "hubspot_events",
        sa.Column("portal_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("portal_id", "event_id"),
        schema="ingest",
    )
    op.create_table(
        "hubspot_contacts",
        sa.Column("portal_id", sa.BigInteger(), nullable=False),
        sa.Column("object_id", sa.BigInteger(), nullable=False),
        sa.Column("properties", JSONB, nullable=False),
        sa.Column("lead_id", sa.UUID()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("portal_id", "object_id"),
        schema="ingest",
    )


def downgrade() -> None:
    op.drop_table("hubspot_contacts", schema="ingest")
    op.drop_table("hubspot_events", schema="ingest")
    op.drop_column("idempotency", "request_hash", schema="ingest")
    op.drop_index("ix_ingest_lead_aliases_lead_id", "lead_aliases", schema="ingest")
    op.drop_table("lead_aliases", schema="ingest")
    op.drop_index("ix_ingest_leads_merged_into", "leads", schema="ingest")
    op.drop_column("leads", "merged_into", schema="ingest")
    op.drop_column("leads", "owner_source", schema="ingest")
    op.alter_column("leads", "email", nullable=False, schema="ingest")
