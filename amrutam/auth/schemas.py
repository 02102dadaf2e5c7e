"""Input and output shapes of the auth use cases (shared by the API and the CLI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

PASSWORD_MIN = 10


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Registration(_Input):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=PASSWORD_MIN, max_length=256)
    full_name: str = Field(min_length=1, max_length=200)
    role: Literal["patient", "doctor"]
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 ()-]{5,30}$")

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class Credentials(_Input):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=1, max_length=256)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class RefreshRequest(_Input):
    refresh_token: str = Field(min_length=16, max_length=256)


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str
    role: str
    phone: str | None = None
    is_active: bool
    created_at: datetime


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class AuthResult(TokenPair):
    user: UserOut
