"""Alembic environment of the scoring schema."""

from leadflow.migrations import run_env
from leadflow_scoring.models import metadata

run_env(metadata)
