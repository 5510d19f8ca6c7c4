"""Alembic environment of the notify schema."""

from leadflow.migrations import run_env
from leadflow_notify.models import metadata

run_env(metadata)
