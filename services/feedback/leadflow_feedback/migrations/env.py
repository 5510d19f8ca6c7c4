"""Alembic environment of the feedback schema."""

from leadflow.migrations import run_env
from leadflow_feedback.models import metadata

run_env(metadata)
