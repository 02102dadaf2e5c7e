"""A second-factor challenge (the password step's mfa_token) is spent by its first
success and by its fifth wrong code, whichever API process sees it (G4: the same
challenge with a second, unused code gave a second session)."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers import (
    assert_problem,
    enrol,
    password_step,
    random_ip,
    register,
    totp_code,
    unique_email,
)
from tests.helpers import verify_code as verify


async def _doctor(client: httpx.AsyncClient) -> tuple[str, str, list[str]]:
    email = unique_email("doc")
    secret, codes = await enrol(client, await register(client, "doctor", email=email))
    return email, secret, codes


async def test_a_challenge_gives_one_session_not_one_per_code(client: httpx.AsyncClient) -> None:
    email, _, codes = await _doctor(client)
    challenge = await password_step(client, email)
    assert (await verify(client, challenge, codes[0])).status_code == 200
    body = assert_problem(await verify(client, challenge, codes[1]), 401)
    assert "spent" in body["detail"]
    # The second code was not used up by the refusal.
    assert (await verify(client, await password_step(client, email), codes[1])).status_code == 200


async def test_two_codes_sent_at_once_with_one_challenge_win_once(
    client: httpx.AsyncClient,
) -> None:
    email, _, codes = await _doctor(client)
    challenge = await password_step(client, email)
    answers = await asyncio.gather(*(verify(client, challenge, code) for code in codes[:4]))
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401]


async def test_five_wrong_codes_spend_the_challenge_even_from_elsewhere(
    client: httpx.AsyncClient,
) -> None:
    email, secret, _ = await _doctor(client)
    challenge = await password_step(client, email)
    for _ in range(5):
        assert_problem(await verify(client, challenge, "000000"), 401)
    # From another address the code throttle (per account and address) lets it through;
    # the challenge itself is spent, so even the right code gets nothing.
    client.headers["X-Forwarded-For"] = random_ip()
    body = assert_problem(await verify(client, challenge, totp_code(secret, 1)), 401)
    assert "spent" in body["detail"]
    fresh = await password_step(client, email)
    assert (await verify(client, fresh, totp_code(secret, 1))).status_code == 200
