"""The one-row tables keeping the latest publication of a document in a service's schema."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from leadflow.contracts.events import ConnectorsPublished
from leadflow.db import service_metadata
from leadflow.publications import CURRENT_CONNECTORS, CURRENT_POLICY, LatestPublication
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable


def migration_ddl(kept: LatestPublication, schema: str) -> str:
    out = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": out}
    )
    kept.create_table(Operations(context), schema)
    return out.getvalue()


def test_every_service_schema_keeps_the_policy() -> None:
    assert CURRENT_POLICY.table(service_metadata("routing")).name == "current_policy"


def test_a_column_its_event_does_not_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="number"):
        LatestPublication(
            "current_x", ConnectorsPublished, {"publication": sa.Integer(), "number": sa.Integer()}
        )


def test_a_table_without_the_publication_number_is_refused() -> None:
    with pytest.raises(ValueError, match="current_x"):
        LatestPublication("current_x", ConnectorsPublished, {"document": sa.Text()})


@pytest.mark.parametrize("kept", [CURRENT_POLICY, CURRENT_CONNECTORS], ids=lambda k: k.table_name)
def test_the_migration_creates_the_table_the_metadata_describes(kept: LatestPublication) -> None:
    table = kept.define(sa.MetaData(schema="scoring"))
    described = str(CreateTable(table).compile(dialect=postgresql.dialect()))
    created = migration_ddl(kept, "scoring")
    assert " ".join(described.split()).rstrip() in " ".join(created.split())
    assert "PRIMARY KEY (id)" in created and "id SMALLINT NOT NULL" in created
