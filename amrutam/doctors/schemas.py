"""Doctor profile and search shapes."""

from __future__ import annotations

import hashlib
import uuid
import zoneinfo
from datetime import datetime
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from amrutam.inputs import Day, Input
from amrutam.pagination import DEFAULT_LIMIT, MAX_LIMIT

# consultation_fee is an int4 column in minor units; 10 million is far above any fee.
MAX_FEE = 10_000_000


def valid_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    # A folder of the tz database ('America') raises IsADirectoryError, an OSError.
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError("not an IANA time zone name") from exc
    return value


class ProfileIn(Input):
    specialty: str = Field(min_length=2, max_length=80)
    languages: list[str] = Field(min_length=1, max_length=12)
    consultation_fee: int = Field(ge=0, le=MAX_FEE, description="minor units (paise, cents)")
    currency: str = Field(default="INR", pattern=r"^[A-Z]{3}$")
    experience_years: int = Field(ge=0, le=80)
    bio: str | None = Field(default=None, max_length=4000)
    city: str | None = Field(default=None, min_length=1, max_length=120)
    timezone: str = Field(max_length=64)

    @field_validator("specialty")
    @classmethod
    def _specialty(cls, value: str) -> str:
        return " ".join(value.split()).lower()

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        cleaned = [" ".join(v.split()).lower() for v in value]
        if any(not v or len(v) > 40 for v in cleaned):
            raise ValueError("each language is 1 to 40 characters")
        return sorted(set(cleaned))

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return valid_timezone(value)


class ProfileOut(BaseModel):
    id: uuid.UUID
    full_name: str
    specialty: str
    languages: list[str]
    consultation_fee: int
    currency: str
    experience_years: int
    rating: float
    rating_count: int
    city: str | None
    timezone: str
    bio: str | None
    updated_at: datetime


SortKey = Literal["fee", "-fee", "rating", "-rating", "experience", "-experience"]


class SearchQuery(Input):
    # Frozen: one parsed query is shared by every request with the same query string
    # (api/validation.py), and its cache key is worked out once.
    model_config = ConfigDict(**Input.model_config, frozen=True)

    specialty: str | None = Field(default=None, max_length=80)
    language: str | None = Field(default=None, max_length=40)
    city: str | None = Field(default=None, max_length=120)
    min_fee: int | None = Field(default=None, ge=0, le=MAX_FEE)
    max_fee: int | None = Field(default=None, ge=0, le=MAX_FEE)
    min_rating: float | None = Field(default=None, ge=0, le=5)
    available_on: Day | None = None
    q: str | None = Field(default=None, min_length=2, max_length=80)
    sort: SortKey = "-rating"
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=500)

    @field_validator("specialty", "language")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return " ".join(value.split()).lower() if value else value

    @model_validator(mode="after")
    def _fee_range(self) -> SearchQuery:
        if self.min_fee is not None and self.max_fee is not None and self.min_fee > self.max_fee:
            raise ValueError("min_fee must not exceed max_fee")
        return self

    @cached_property
    def cache_key(self) -> str:
        params = self.model_dump_json(exclude_none=True).encode()
        return "search:" + hashlib.sha256(params).hexdigest()[:32]


class ProfilePage(BaseModel):
    items: list[ProfileOut]
    next_cursor: str | None
