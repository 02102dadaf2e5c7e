"""Second factors: TOTP (RFC 6238, SHA-1, 6 digits, 30 s steps) and recovery codes.

The rules only; the use cases that store and check them are in ``auth.factors``.
- A TOTP code is accepted one step either side of now (clock drift), and each step only
  once per account: the caller stores the step a code matched and refuses any step not
  after it (a code seen over a shoulder or replayed from a log is worth nothing).
- Secrets are kept encrypted (Fernet, with a key derived from a setting), never in
  plain text beside the password hash.
- Recovery codes are 80 random bits, so a fast hash is enough to store them (as for
  refresh tokens); they are shown once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

import pyotp
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ISSUER = "Amrutam"
RECOVERY_CODES = 10
# Steps either side of the server's clock a code may come from.
_DRIFT_STEPS = 1
_TOTP_CODE = re.compile(r"[0-9]{6}")
_NOT_BASE32 = re.compile(r"[^A-Z2-7]")


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, as RFC 4226 recommends


def enrolment_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def is_totp_code(code: str) -> bool:
    return _TOTP_CODE.fullmatch(code) is not None


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step whose code ``code`` is (within the allowed drift), or None."""
    if not is_totp_code(code):
        return None
    totp = pyotp.TOTP(secret)
    now = int((time.time() if at is None else at) // totp.interval)
    for step in range(now - _DRIFT_STEPS, now + _DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes like ``K7QF-2M4X-TD3B-9PZA`` (80 bits each)."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(10)).decode()
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def recovery_code_hash(code: str) -> str:
    """The stored form of a recovery code, however the user typed it (case, dashes)."""
    return hashlib.sha256(_NOT_BASE32.sub("", code.upper()).encode()).hexdigest()


class SecretBox:
    """Encrypts TOTP secrets at rest with a key of their own (HKDF of the setting)."""

    def __init__(self, key: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"amrutam-mfa")
        self._fernet = Fernet(base64.urlsafe_b64encode(derived.derive(key)))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()
