"""Slot and appointment shapes."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from amrutam.doctors.schemas import valid_timezone
from amrutam.inputs import Day, Input, Instant, LocalTime
from amrutam.pagination import DEFAULT_LIMIT, MAX_LIMIT

MAX_SLOTS_PER_REQUEST = 1000
MIN_SLOT = timedelta(minutes=5)
MAX_SLOT = timedelta(hours=8)
MAX_RULE_DAYS = 92


class SlotTimes(Input):
    starts_at: Instant
    ends_at: Instant

    @model_validator(mode="after")
    def _duration(self) -> SlotTimes:
        self.starts_at = self.starts_at.astimezone(UTC)
        self.ends_at = self.ends_at.astimezone(UTC)
        if not MIN_SLOT <= self.ends_at - self.starts_at <= MAX_SLOT:
            raise ValueError("a slot lasts between 5 minutes and 8 hours")
        return self


class ExplicitSlots(Input):
    slots: list[SlotTimes] = Field(min_length=1, max_length=MAX_SLOTS_PER_REQUEST)


class WeeklyRule(Input):
    from_date: Day
    to_date: Day
    weekdays: list[int] = Field(min_length=1, max_length=7, description="0 = Monday ... 6 = Sunday")
    start_time: LocalTime
    end_time: LocalTime
    slot_minutes: int = Field(ge=5, le=480)
    timezone: str = Field(max_length=64)

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(not 0 <= day <= 6 for day in value):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return sorted(set(value))

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return valid_timezone(value)

    @model_validator(mode="after")
    def _ranges(self) -> WeeklyRule:
        if self.to_date < self.from_date:
            raise ValueError("to_date is before from_date")
        if (self.to_date - self.from_date).days >= MAX_RULE_DAYS:
            raise ValueError(f"a rule covers at most {MAX_RULE_DAYS} days")
        if self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        return self


class SlotOut(BaseModel):
    id: uuid.UUID
    doctor_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    status: Literal["open", "held", "booked", "blocked"]


class SlotList(BaseModel):
    items: list[SlotOut]
    next_cursor: str | None = None


class SlotQuery(Input):
    from_: Instant | None = Field(default=None, alias="from")
    to: Instant | None = None
    status: Literal["open", "booked", "all"] = "open"
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=500)


class BookingIn(Input):
    """A slot by its id, or the slot of the caller's hold (exactly one of the two)."""

    slot_id: uuid.UUID | None = None
    hold_id: uuid.UUID | None = None
    reason: str | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _one_slot(self) -> BookingIn:
        if (self.slot_id is None) == (self.hold_id is None):
            raise ValueError("name either slot_id or hold_id")
        return self


class WaitlistIn(Input):
    """A place in line for a doctor's date (in the doctor's time zone), optionally only
    for slots inside a time window of that day."""

    date: Day
    from_time: LocalTime | None = None
    to_time: LocalTime | None = None

    @model_validator(mode="after")
    def _window(self) -> WaitlistIn:
        if self.from_time and self.to_time and self.from_time >= self.to_time:
            raise ValueError("from_time must come before to_time")
        return self


class WaitlistOffer(BaseModel):
    hold_id: uuid.UUID
    expires_at: datetime


class WaitlistEntryOut(BaseModel):
    id: uuid.UUID
    doctor_id: uuid.UUID
    date: date
    from_time: time | None = None
    to_time: time | None = None
    status: Literal["waiting", "offered", "booked", "expired", "cancelled"]
    created_at: datetime
    offer: WaitlistOffer | None = None


class WaitlistPage(BaseModel):
    items: list[WaitlistEntryOut]


class HoldOut(BaseModel):
    id: uuid.UUID
    slot_id: uuid.UUID
    patient_id: uuid.UUID
    expires_at: datetime


class RescheduleIn(Input):
    slot_id: uuid.UUID


class AppointmentOut(BaseModel):
    id: uuid.UUID
    slot_id: uuid.UUID
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    status: Literal["booked", "cancelled", "completed", "no_show"]
    reason: str | None
    created_at: datetime


class AppointmentPage(BaseModel):
    items: list[AppointmentOut]
    next_cursor: str | None


class AppointmentQuery(Input):
    status: Literal["booked", "cancelled", "completed", "no_show"] | None = None
    from_: Instant | None = Field(default=None, alias="from")
    to: Instant | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=500)
