"""Response models of the policy's versions (`/v1/policy`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

State = Literal["draft", "published", "superseded"]


class VersionOut(BaseModel):
    number: int = Field(description="the version's number, 1 for the policy of the first start")
    version: str = Field(description="the document's own `version`: what decisions record")
    state: State = Field(
        description="draft (never published), published (the current policy) or superseded"
    )
    created_by: str
    created_at: datetime
    publication: int | None = Field(
        description="the count of publications when this version was last published"
    )
    published_by: str | None
    published_at: datetime | None = Field(description="when it last became the current policy")


class VersionDetail(VersionOut):
    text: str = Field(description="the policy as written (YAML, comments kept)")
    document: dict[str, Any] = Field(description="the validated policy, as services apply it")


class PathChangeOut(BaseModel):
    path: str = Field(description="the dotted path of a value, e.g. `scoring.mql.fit_min`")
    before: Any = Field(description="its value in the first version; null when added")
    after: Any = Field(description="its value in the second version; null when removed")


class DiffOut(BaseModel):
    before: int
    after: int
    changes: list[PathChangeOut] = Field(description="every value that differs, in path order")
    text: str = Field(description="a unified diff of the two texts (`diff -u`)")
