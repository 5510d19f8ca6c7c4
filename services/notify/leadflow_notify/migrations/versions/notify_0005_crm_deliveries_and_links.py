"""routed leads written to CRMs through the delivery queue, and the CRM records of leads

A delivery goes to a webhook endpoint or to a CRM connector (`connector`: hubspot |
salesforce), never both; a lead's record in each CRM is kept once (`crm_links`).

Revision ID: notify_0005
Revises: notify_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "notify_0005"
down_revision = "notify_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("deliveries", "endpoint_id", nullable=True, schema="notify")
    op.add_column("deliveries", sa.Column("connector", sa.Text(), nullable=True), schema="notify")
    op.create_check_constraint(
        "ck_deliveries_one_target",
        "deliveries",
        "(endpoint_id IS NULL) <> (connector IS NULL)",
        schema="notify",
    )
    op.create_index(
        "uq_deliveries_connector_event",
        "deliveries",
        ["connector", "event_id"],
        unique=True,
        schema="notify",
        postgresql_where=sa.text("connector IS NOT NULL"),
    )
    op.create_table(
        "crm_links",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("object_type", sa.Text(), nullable=False),
        sa.Column("object_id", sa.Text(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lead_id", "system"),
        schema="notify",
    )


def downgrade() -> None:
    op.drop_table("crm_links", schema="notify")
    op.execute("DELETE FROM notify.deliveries WHERE connector IS NOT NULL")
    op.drop_index("uq_deliveries_connector_event", table_name="deliveries", schema="notify")
    op.drop_constraint("ck_deliveries_one_target", "deliveries", schema="notify")
    op.drop_column("deliveries", "connector", schema="notify")
    op.alter_column("deliveries", "endpoint_id", nullable=False, schema="notify")
