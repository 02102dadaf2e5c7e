"""Availability slots and appointments.

Two rules live in the database itself, whatever the application does:
- a doctor's slots never overlap (exclusion constraint over ``tstzrange``);
- a slot is held by at most one ``booked`` appointment (partial unique index), and a
  patient never holds two ``booked`` appointments that overlap (exclusion constraint).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from amrutam.timeutil import utcnow


class SlotStatus(enum.StrEnum):
    open = "open"
    booked = "booked"
    blocked = "blocked"


class AppointmentStatus(enum.StrEnum):
    booked = "booked"
    cancelled = "cancelled"
    completed = "completed"
    no_show = "no_show"


def _ts(nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable)


class Slot(SQLModel, table=True):
    __tablename__ = "availability_slots"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    doctor_id: uuid.UUID = Field(foreign_key="doctors.user_id", ondelete="CASCADE")
    starts_at: datetime = Field(sa_column=_ts())
    ends_at: datetime = Field(sa_column=_ts())
    status: str = Field(default=SlotStatus.open.value, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class Appointment(SQLModel, table=True):
    __tablename__ = "appointments"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    slot_id: uuid.UUID | None = Field(
        default=None, foreign_key="availability_slots.id", ondelete="SET NULL"
    )
    doctor_id: uuid.UUID = Field(foreign_key="doctors.user_id")
    patient_id: uuid.UUID = Field(foreign_key="users.id")
    starts_at: datetime = Field(sa_column=_ts())
    ends_at: datetime = Field(sa_column=_ts())
    status: str = Field(default=AppointmentStatus.booked.value, max_length=16)
    reason: str | None = Field(default=None, max_length=1000)
    idempotency_key: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
