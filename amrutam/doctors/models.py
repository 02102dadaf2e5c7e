"""Doctor profiles, keyed by the doctor's user id."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

from amrutam.timeutil import utcnow


class Doctor(SQLModel, table=True):
    __tablename__ = "doctors"

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE")
    # A copy of users.full_name so that name search needs no join.
    display_name: str = Field(max_length=200)
    specialty: str = Field(max_length=80)
    languages: list[str] = Field(sa_column=sa.Column(postgresql.ARRAY(sa.Text()), nullable=False))
    consultation_fee: int = Field(ge=0)
    currency: str = Field(default="INR", max_length=3)
    experience_years: int = Field(default=0, ge=0)
    rating: Decimal = Field(
        default=Decimal("0"), sa_column=sa.Column(sa.Numeric(3, 2), nullable=False)
    )
    rating_count: int = Field(default=0)
    city: str | None = Field(default=None, max_length=120)
    timezone: str = Field(max_length=64)
    bio: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False)
    )
