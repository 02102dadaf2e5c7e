"""Consultation and prescription shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from amrutam.inputs import Input
from amrutam.pagination import DEFAULT_LIMIT, MAX_LIMIT


class CompleteIn(Input):
    notes: str = Field(min_length=1, max_length=20_000)
    diagnosis: str | None = Field(default=None, max_length=2000)


class PrescriptionItem(Input):
    medicine: str = Field(min_length=1, max_length=200)
    dosage: str = Field(min_length=1, max_length=100)
    frequency: str = Field(min_length=1, max_length=100)
    duration_days: int = Field(ge=1, le=365)
    instructions: str | None = Field(default=None, max_length=1000)


class PrescriptionIn(Input):
    items: list[PrescriptionItem] = Field(min_length=1, max_length=50)
    notes: str | None = Field(default=None, max_length=4000)


class ConsultationOut(BaseModel):
    id: uuid.UUID
    appointment_id: uuid.UUID
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    status: Literal["started", "completed"]
    started_at: datetime
    completed_at: datetime | None
    notes: str | None
    diagnosis: str | None


class PrescriptionOut(BaseModel):
    id: uuid.UUID
    consultation_id: uuid.UUID
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    items: list[dict[str, Any]]
    notes: str | None
    issued_at: datetime


class PrescriptionPage(BaseModel):
    items: list[PrescriptionOut]
    next_cursor: str | None


class PageQuery(Input):
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=500)
