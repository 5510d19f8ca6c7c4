"""Request and response models of people's accounts (`/v1/users`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from leadflow.text import StorableModel
from pydantic import BaseModel, EmailStr, Field, SecretStr

from leadflow_feedback.domain.roles import Role

Teams = list[str]


class UserIn(StorableModel):
    email: EmailStr = Field(description="how the person signs in (kept lower-case)")
    name: str = Field(min_length=1, max_length=200)
    role: Role = Field(description="viewer | sales_manager | marketing_ops | admin")
    teams: Teams = Field(
        default_factory=list,
        max_length=100,
        description="a sales manager's teams, by name: the leads whose timelines they see",
    )
    password: SecretStr | None = Field(
        default=None,
        min_length=12,
        max_length=1024,
        description="a local password (at least 12 characters); none for a person who signs "
        "in with the company's identity provider",
    )


class UserChange(StorableModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    teams: Teams | None = Field(default=None, max_length=100)
    password: SecretStr | None = Field(default=None, min_length=12, max_length=1024)
    disabled: bool | None = Field(
        default=None, description="true: the person can no longer sign in, their sessions end"
    )


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: Role
    teams: Teams
    has_password: bool = Field(description="whether the person may sign in with a password")
    oidc_issuer: str | None = Field(description="the identity provider the person came from")
    created_at: datetime
    changed_at: datetime
    disabled_at: datetime | None
    last_signed_in_at: datetime | None
