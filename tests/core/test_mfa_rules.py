"""The TOTP and recovery-code rules (RFC 6238 test vectors and the drift allowed)."""

from __future__ import annotations

import pyotp
import pytest
from cryptography.fernet import InvalidToken

from amrutam.auth import mfa

# RFC 6238 appendix B, SHA-1: the ASCII secret "12345678901234567890", 8-digit codes
# whose last six digits are the 6-digit codes.
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
RFC_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924")]


@pytest.mark.parametrize(("at", "code"), RFC_VECTORS)
def test_codes_match_the_rfc_vectors(at: int, code: str) -> None:
    assert mfa.matching_step(RFC_SECRET, code[-6:], at=at) == at // 30


def test_one_step_of_drift_either_way_and_no_more() -> None:
    at = 1_000_000_020.0
    now = int(at // 30)
    totp = pyotp.TOTP(RFC_SECRET)
    for drift in (-1, 0, 1):
        assert mfa.matching_step(RFC_SECRET, totp.at(at + drift * 30), at=at) == now + drift
    too_far = totp.at(at + 60)
    assert mfa.matching_step(RFC_SECRET, too_far, at=at) is None


@pytest.mark.parametrize("typed", ["12345", "1234567", "12 456", "abcdef", "١٢٣٤٥٦", ""])
def test_anything_but_six_ascii_digits_is_no_code(typed: str) -> None:
    assert mfa.matching_step(RFC_SECRET, typed, at=59) is None


def test_recovery_codes_are_random_and_typed_any_way() -> None:
    codes = mfa.new_recovery_codes()
    assert len(set(codes)) == mfa.RECOVERY_CODES
    code = codes[0]
    same = mfa.recovery_code_hash(code)
    assert mfa.recovery_code_hash(code.lower()) == same
    assert mfa.recovery_code_hash(code.replace("-", " ")) == same
    assert mfa.recovery_code_hash(codes[1]) != same


def test_secrets_are_sealed_under_their_key_only() -> None:
    box = mfa.SecretBox(b"k" * 40)
    secret = mfa.new_secret()
    sealed = box.seal(secret)
    assert secret not in sealed
    assert box.open(sealed) == secret
    with pytest.raises(InvalidToken):
        mfa.SecretBox(b"other" * 8).open(sealed)
