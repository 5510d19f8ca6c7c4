"""Tables of the scoring schema: what scoring knows of each lead and its current scores."""

import sqlalchemy as sa
from leadflow.db import JSON, service_metadata
from sqlalchemy.dialects.postgresql import UUID

metadata = service_metadata("scoring")

lead_scores = sa.Table(
    "lead_scores",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("lead", JSON, nullable=False),  # the latest lead snapshot from ingest
    sa.Column("interactions", JSON, nullable=False),  # [{kind, type, occurred_at}]
    sa.Column("fit", sa.Integer, nullable=False, server_default="0"),
    sa.Column("engagement", sa.Float, nullable=False, server_default="0"),
    sa.Column("intent_tier", sa.Integer, nullable=False, server_default="0"),
    sa.Column("is_mql", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("breakdown", JSON, nullable=False),
    # Why the MQL rule holds or fails (stable codes first), as of scored_at.
    sa.Column("reasons", JSON, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("policy_version", sa.Text),
    # The latest promotion (first, or again after a recycle) and whether it was an MQL or PQL.
    sa.Column("mql_at", sa.DateTime(timezone=True)),
    sa.Column("mql_kind", sa.Text),
    sa.Column("scored_at", sa.DateTime(timezone=True)),
    # When the score changes without any event: the next full decay period, or the end of
    # the nurture window of a recycled lead. NULL: nothing changes until the next event.
    sa.Column("next_review_at", sa.DateTime(timezone=True)),
    # Sales recycled the lead: why, when, its intent tier then, and until when it rests in
    # nurture. nurture_until stays set until the lead is promoted again.
    sa.Column("recycled_at", sa.DateTime(timezone=True)),
    sa.Column("recycle_reason", sa.Text),
    sa.Column("recycle_intent_tier", sa.Integer),
    sa.Column("nurture_until", sa.DateTime(timezone=True)),
    sa.Index(
        "ix_scoring_lead_scores_next_review_at",
        "next_review_at",
        postgresql_where=sa.text("next_review_at IS NOT NULL"),
    ),
)

# Product usage of product-led accounts, one row per lead.activity of type product_usage.
product_usage = sa.Table(
    "product_usage",
    metadata,
    sa.Column("activity_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
    sa.Column("account", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("feature", sa.Text),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_scoring_product_usage_lead_id", "lead_id"),
    sa.Index("ix_scoring_product_usage_account", "account", "occurred_at"),
)

# Accounts already promoted as PQL: an account is handed to sales once.
pql_accounts = sa.Table(
    "pql_accounts",
    metadata,
    sa.Column("account", sa.Text, primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
    sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False),
)
