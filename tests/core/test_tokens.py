"""Access tokens: a verified token is remembered, but never past its expiry; a second-factor
challenge and an access token never pass for each other; a token not signed by us as we
sign ours (key, key id, algorithm, issuer, claims) is refused with a clear 401 cause.

The forged tokens are made with PyJWT, another implementation than the one that checks
them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

import jwt
import orjson
import pytest
import time_machine

from amrutam.auth.tokens import AccessTokens
from amrutam.errors import AuthenticationFailed
from amrutam.settings import Settings


@pytest.fixture
def tokens() -> AccessTokens:
    return AccessTokens(Settings())


# Tokens for the parameters are made when the tests are collected, which can be many
# minutes before they run: they expire in a year, so that no refusal is for expiry.
_YEAR_S = 365 * 24 * 3600


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(uuid.uuid4()),
        "role": "patient",
        "fam": str(uuid.uuid4()),
        "iss": "amrutam",
        "iat": now,
        "exp": now + _YEAR_S,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _segment(data: object) -> str:
    """``data`` as JSON (or a JSON text as it is), base64url-encoded."""
    text = data.encode() if isinstance(data, str) else orjson.dumps(data)
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode()


def _signed(header: object, claims: object) -> str:
    """A token signed with our key whatever its header (PyJWT refuses to make odd ones)."""
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    secret = Settings().jwt_secret.get_secret_value().encode()
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_a_remembered_token_still_expires(tokens: AccessTokens) -> None:
    token = tokens.issue(uuid.uuid4(), "patient", uuid.uuid4())
    assert tokens.verify(token).role == "patient"
    assert tokens.verify(token).role == "patient"  # from memory
    with (
        time_machine.travel(time.time() + tokens.ttl + 1, tick=False),
        pytest.raises(AuthenticationFailed, match="expired"),
    ):
        tokens.verify(token)


def test_a_token_altered_after_its_twin_was_remembered_is_refused(tokens: AccessTokens) -> None:
    token = tokens.issue(uuid.uuid4(), "patient", uuid.uuid4())
    tokens.verify(token)
    header, payload, signature = token.split(".")
    forged_payload = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(AuthenticationFailed):
        tokens.verify(f"{header}.{forged_payload}.{signature}")


def test_a_challenge_is_no_access_token_and_an_access_token_no_challenge(
    tokens: AccessTokens,
) -> None:
    user = uuid.uuid4()
    challenge = tokens.challenge(user)
    assert tokens.challenged(challenge).user_id == user
    with pytest.raises(AuthenticationFailed):
        tokens.verify(challenge)
    with pytest.raises(AuthenticationFailed):
        tokens.challenged(tokens.issue(user, "doctor", uuid.uuid4()))
    with (
        time_machine.travel(time.time() + tokens.challenge_ttl + 1, tick=False),
        pytest.raises(AuthenticationFailed, match="expired"),
    ):
        tokens.challenged(challenge)


def test_only_a_token_marked_for_enrolment_is_restricted(tokens: AccessTokens) -> None:
    user, session = uuid.uuid4(), uuid.uuid4()
    assert tokens.verify(tokens.issue(user, "doctor", session, enrolling=True)).enrolling
    assert not tokens.verify(tokens.issue(user, "doctor", session)).enrolling


def test_a_token_signed_as_we_sign_is_accepted(tokens: AccessTokens) -> None:
    """The baseline of the refusals below: PyJWT's token made our way passes."""
    secret = Settings().jwt_secret.get_secret_value()
    claims = _claims()
    token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "k1"})
    assert str(tokens.verify(token).user_id) == claims["sub"]


@pytest.mark.parametrize(
    ("why", "claims", "key", "algorithm", "headers"),
    [
        ("another key", _claims(), "another-secret-" * 4, "HS256", {"kid": "k1"}),
        ("an unknown key id", _claims(), None, "HS256", {"kid": "k2"}),
        ("no key id", _claims(), None, "HS256", {}),
        ("another algorithm", _claims(), None, "HS512", {"kid": "k1"}),
        ("another issuer", _claims(iss="someone"), None, "HS256", {"kid": "k1"}),
        ("no issue time", _claims(iat=None), None, "HS256", {"kid": "k1"}),
        (
            "issued in the future",
            _claims(iat=int(time.time()) + _YEAR_S),
            None,
            "HS256",
            {"kid": "k1"},
        ),
        ("no expiry", _claims(exp=None), None, "HS256", {"kid": "k1"}),
        ("an expiry that is text", _claims(exp="never"), None, "HS256", {"kid": "k1"}),
        ("no role", _claims(role=None), None, "HS256", {"kid": "k1"}),
        ("an audience", _claims(aud="somewhere"), None, "HS256", {"kid": "k1"}),
    ],
)
def test_a_token_not_made_as_ours_is_refused(
    tokens: AccessTokens,
    why: str,
    claims: dict[str, object],
    key: str | None,
    algorithm: str,
    headers: dict[str, object],
) -> None:
    secret = key or Settings().jwt_secret.get_secret_value()
    token = jwt.encode(claims, secret, algorithm=algorithm, headers=headers)
    if not headers:  # PyJWT adds no kid of its own, but say so
        assert "kid" not in jwt.get_unverified_header(token)
    with pytest.raises(AuthenticationFailed, match="invalid access token"):
        tokens.verify(token)


# JSON's 1e999 reads as infinity: a token that would never expire.
_INFINITE_EXPIRY = orjson.dumps(_claims(exp=None)).decode()[:-1] + ',"exp":1e999}'


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b.c",
        "only-one-part",
        f"{_segment(['not', 'an', 'object'])}.{_segment(_claims())}.c2ln",
        f"{_segment({'alg': 'none', 'kid': 'k1'})}.{_segment(_claims())}.",
        f"{_segment({'alg': 'HS256', 'kid': 'k1'})}.{_segment([1, 2])}.c2ln",
        f"{_segment({'alg': 'HS256', 'kid': 'k1'})}.bm90IGpzb24.c2ln",
        "ü.ü.ü",
        _signed({"alg": "HS256", "kid": ["k1"]}, _claims()),
        _signed({"alg": "HS256", "kid": "k1", "crit": ["exp"]}, _claims()),
        _signed({"alg": "HS256", "kid": "k1"}, _INFINITE_EXPIRY),
        _signed({"alg": "HS256", "kid": "k1"}, _claims(fam=["x"])),
    ],
)
def test_a_malformed_token_is_refused_not_an_error(tokens: AccessTokens, token: str) -> None:
    assert tokens.verify(_signed({"alg": "HS256", "kid": "k1"}, _claims())).role == "patient"
    with pytest.raises(AuthenticationFailed, match="invalid access token"):
        tokens.verify(token)
