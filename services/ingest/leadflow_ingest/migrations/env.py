"""Alembic environment of the ingest schema."""

from leadflow.migrations import run_env
from leadflow_ingest.models import metadata

run_env(metadata)
