"""Audit query shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from amrutam.inputs import Input, Instant
from amrutam.pagination import DEFAULT_LIMIT, MAX_LIMIT


class AuditQuery(Input):
    actor_id: uuid.UUID | None = None
    action: str | None = Field(default=None, max_length=64)
    entity_type: str | None = Field(default=None, max_length=32)
    entity_id: str | None = Field(default=None, max_length=64)
    from_: Instant | None = Field(default=None, alias="from")
    to: Instant | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=500)


class VerifyQuery(Input):
    from_: Instant | None = Field(default=None, alias="from")
    to: Instant | None = None


class AuditEntryOut(BaseModel):
    id: uuid.UUID
    occurred_at: datetime
    actor_id: uuid.UUID | None
    actor_role: str | None
    action: str
    entity_type: str | None
    entity_id: str | None
    request_id: str | None
    ip: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    sealed_periods: int
    first_bad: dict[str, Any] | None = None
