"""Which writer may write which lead: a key bound to a source system writes that system's leads only."""

from __future__ import annotations

from dataclasses import dataclass

from leadflow.errors import Forbidden


@dataclass(frozen=True)
class Writer:
    """Who is writing: the API key (or Kafka source) and the source system it is bound to."""

    key_name: str
    source: str | None = None

    def check_source_system(self, system: str | None) -> None:
        if self.source and system and system.strip().lower() != self.source.lower():
            raise Forbidden(
                f"this key writes leads of source '{self.source}' only",
                field="source.system",
            )

    def check_owner(self, owner: str | None, field: str) -> None:
        if self.source and owner and owner.lower() != self.source.lower():
            raise Forbidden(
                f"this lead belongs to another source; this key writes '{self.source}' leads only",
                field=field,
            )
