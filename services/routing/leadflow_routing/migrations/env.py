"""Alembic environment of the routing schema."""

from leadflow.migrations import run_env
from leadflow_routing.models import metadata

run_env(metadata)
