"""A console table as data: its columns and rows, rendered as HTML by the templates and as CSV
by `as_csv` (`?format=csv` on every page). Pure."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    name: str  # `?table=<name>` picks it for CSV when a page has several
    columns: list[tuple[str, str]]  # (key, heading)
    rows: list[dict[str, Any]] = field(default_factory=list)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def as_csv(table: Table) -> str:
    """The table's rows under its headings; a cell a spreadsheet would run as a formula
    (`=`, `+`, `-`, `@` first) is written as text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([heading for _, heading in table.columns])
    for row in table.rows:
        values = [cell(row.get(key)) for key, _ in table.columns]
        writer.writerow(["'" + v if v[:1] in ("=", "+", "-", "@") else v for v in values])
    return out.getvalue()


def pick(tables: list[Table], name: str | None) -> Table | None:
    if not tables:
        return None
    if name is None:
        return tables[0]
    return next((t for t in tables if t.name == name), None)
