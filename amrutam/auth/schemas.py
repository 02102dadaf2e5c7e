"""Input and output shapes of the auth use cases (shared by the API and the CLI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field, RootModel, field_validator, model_validator
from zxcvbn import zxcvbn

from amrutam.inputs import Input

PASSWORD_MIN = 10
# zxcvbn's scale: 0-1 fall to fewer than a million guesses (common or patterned).
MIN_PASSWORD_SCORE = 2


TOO_GUESSABLE = "this password is too common or too easy to guess"


def guessable(password: str, *hints: str) -> bool:
    """NIST 800-63B: refuse common and easily guessed passwords rather than impose
    composition rules. zxcvbn ships its lists (no network); its cost grows with length,
    so the first 64 characters decide. ``hints``: the account's own words (e-mail, name)."""
    return bool(zxcvbn(password[:64], user_inputs=list(hints))["score"] < MIN_PASSWORD_SCORE)


class _ByEmail(Input):
    """Accounts are found by their email, compared in lower case."""

    email: EmailStr = Field(max_length=320)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class NewAccount(_ByEmail):
    """What every new account needs, however it is made (registration, the CLI)."""

    password: str = Field(min_length=PASSWORD_MIN, max_length=256)
    full_name: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _not_guessable(self) -> NewAccount:
        if guessable(self.password, self.email, self.full_name):
            raise ValueError(TOO_GUESSABLE)
        return self


class Registration(NewAccount):
    role: Literal["patient", "doctor"]
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9][0-9 ()-]{5,30}$")


class PasswordChange(Input):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=PASSWORD_MIN, max_length=256)


class Credentials(_ByEmail):
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(Input):
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


class LoginChallenge(BaseModel):
    """The password was right; the account's second factor comes next."""

    mfa_required: Literal[True] = True
    mfa_token: str
    expires_in: int


class MfaCode(Input):
    # A 6-digit TOTP code or a recovery code (XXXX-XXXX-XXXX-XXXX, any case).
    code: str = Field(min_length=6, max_length=32)


class MfaVerification(MfaCode):
    mfa_token: str = Field(min_length=16, max_length=2048)


class MfaSetup(BaseModel):
    secret: str
    otpauth_uri: str


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]


class SessionOut(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool


class LoginAnswer(RootModel[AuthResult | LoginChallenge]):
    """What a right password gets: tokens, or a challenge for the second factor."""


class SessionList(RootModel[list[SessionOut]]):
    pass
