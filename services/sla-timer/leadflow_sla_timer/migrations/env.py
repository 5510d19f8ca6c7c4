"""Alembic environment of the sla-timer schema."""

from leadflow.migrations import run_env
from leadflow_sla_timer.models import metadata

run_env(metadata)
