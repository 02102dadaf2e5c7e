"""Accounts and refresh tokens."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from amrutam.timeutil import utcnow


class Role(enum.StrEnum):
    patient = "patient"
    doctor = "doctor"
    admin = "admin"


def _tz(nullable: bool = False, **kw: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(sa.DateTime(timezone=True), nullable=nullable, **kw)  # type: ignore[arg-type]


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (
        sa.Index("uq_users_email_lower", sa.text("lower(email)"), unique=True),
        sa.CheckConstraint("role IN ('patient', 'doctor', 'admin')", name="ck_users_role"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=320)
    password_hash: str = Field(max_length=255)
    full_name: str = Field(max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    role: str = Field(max_length=16)
    is_active: bool = Field(default=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=_tz(server_default=sa.func.now())
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=_tz(server_default=sa.func.now())
    )


class RefreshToken(SQLModel, table=True):
    """One refresh token; rotation chains tokens in a family, reuse revokes the family."""

    __tablename__ = "refresh_tokens"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True, ondelete="CASCADE")
    family_id: uuid.UUID = Field(index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=_tz(server_default=sa.func.now())
    )
    expires_at: datetime = Field(sa_column=_tz(index=True))
    used_at: datetime | None = Field(default=None, sa_column=_tz(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_tz(nullable=True))
