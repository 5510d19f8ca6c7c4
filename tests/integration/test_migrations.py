"""Every service's migrations build exactly the schema its models describe, and go down and up
again cleanly."""

import asyncio

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from leadflow.migrations import alembic_config
from leadflow_tools.registry import all_specs
from sqlalchemy.ext.asyncio import create_async_engine

SPECS = {spec.name: spec for spec in all_specs()}


def _diff(connection, metadata: sa.MetaData) -> list:
    schema = metadata.schema

    def include_name(name, type_, parent_names):
        return name == schema if type_ == "schema" else True

    context = MigrationContext.configure(
        connection,
        opts={
            "include_schemas": True,
            "include_name": include_name,
            "version_table_schema": schema,
            "compare_type": True,
        },
    )
    diffs = compare_metadata(context, metadata)
    return [d for d in diffs if not (d[0] == "remove_table" and d[1].name == "alembic_version")]


@pytest.mark.parametrize("name", sorted(SPECS))
async def test_migrations_match_the_models(settings, name):
    spec = SPECS[name]
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(_diff, spec.metadata)
    finally:
        await engine.dispose()
    assert diffs == []


@pytest.mark.parametrize("name", sorted(SPECS))
async def test_migrations_go_down_and_up_again(settings, name):
    spec = SPECS[name]
    config = alembic_config(spec.package, settings.database_url)
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(command.upgrade, config, "head")
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(_diff, spec.metadata)
    finally:
        await engine.dispose()
    assert diffs == []
