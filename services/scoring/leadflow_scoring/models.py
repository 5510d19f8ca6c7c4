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
    sa.Column("policy_version", sa.Text),
    sa.Column("mql_at", sa.DateTime(timezone=True)),
    sa.Column("scored_at", sa.DateTime(timezone=True)),
)
