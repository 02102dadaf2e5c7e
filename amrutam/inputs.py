"""The base of every input model: what no field of any request may carry.

Every body, query string and cursor is parsed into a subclass of :class:`Input`
(``api/validation.py`` refuses any other model), so a new field inherits these checks
instead of having to remember them:
- unknown fields are refused;
- no text holds a NUL character, which PostgreSQL cannot store (text or jsonb);
- no date or instant lies outside 1900-2199, which PostgreSQL, Python and every time
  zone conversion between them hold with room to spare.
Integer fields carry their own bounds (``Field(le=...)``), set from their columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    model_validator,
)

FIRST_YEAR, LAST_YEAR = 1900, 2199
INT4_MAX = 2**31 - 1


def _in_range(value: date) -> None:
    # The year alone, before any arithmetic: comparing or converting year 1 or 9999 with
    # an offset overflows.
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must lie between the years {FIRST_YEAR} and {LAST_YEAR}")


def _bounded_instant(value: datetime) -> datetime:
    _in_range(value)
    return value


def _bounded_day(value: date) -> date:
    _in_range(value)
    return value


def _iso_text(value: Any) -> Any:
    # pydantic reads a number (or numeric text) as a Unix timestamp; the contract says
    # ISO 8601 (RFC 3339), so '0.5' is not a time.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("an ISO 8601 date or time, not a number")
    return value


_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _local(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a local time of day, without an offset")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_bounded_instant)]
Day = Annotated[date, BeforeValidator(_iso_text), AfterValidator(_bounded_day)]
# A time of day in a zone the request names elsewhere (a doctor's): an offset would be a
# second, contradicting zone, and dropping it would move the time silently.
LocalTime = Annotated[time, BeforeValidator(_iso_text), AfterValidator(_local)]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _dates(value: Any) -> Iterable[date]:
    if isinstance(value, date):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _dates(item)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if any("\x00" in text for text in _strings(data)):
            raise ValueError("text may not contain NUL (\\u0000) characters")
        return data

    @model_validator(mode="after")
    def _dates_in_range(self) -> Input:
        # A safety net for a date field declared without ``Instant`` or ``Day``.
        for value in self.__dict__.values():
            for day in _dates(value):
                _in_range(day)
        return self
