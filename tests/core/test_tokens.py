"""Access tokens: a verified token is remembered, but never past its expiry; a second-factor
challenge and an access token never pass for each other."""

from __future__ import annotations

import time
import uuid

import pytest
import time_machine

from amrutam.auth.tokens import AccessTokens
from amrutam.errors import AuthenticationFailed
from amrutam.settings import Settings


@pytest.fixture
def tokens() -> AccessTokens:
    return AccessTokens(Settings())


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
    assert tokens.challenged(challenge) == user
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
