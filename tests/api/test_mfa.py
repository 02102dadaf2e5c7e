"""TOTP second factors against the real server, database and Redis: setup, confirm, the
two-step login, replayed and recovery codes, attempt limits, disabling, and the
enrolment a setting requires of doctors and admins."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, unquote, urlparse

import asyncpg
import httpx
import pytest

from amrutam.dev.servers import RedisServer
from tests.factories import pg_dsn
from tests.helpers import (
    PASSWORD,
    api_env,
    as_app_role,
    assert_problem,
    bearer,
    enrol,
    password_step,
    random_ip,
    register,
    totp_code,
    unique_email,
)
from tests.helpers import verify_code as verify
from tests.servers import ApiServer

RECOVERY_CODE = re.compile(r"[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}")
ENROL = "https://amrutam.io/problems/mfa-enrolment-required"


async def actions_of(database_url: str, user_id: str) -> list[tuple[str, str | None]]:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT action, detail::text FROM audit_logs WHERE entity_id = $1 "
            "ORDER BY occurred_at, id",
            user_id,
        )
    finally:
        await conn.close()
    return [(r["action"], r["detail"]) for r in rows]


async def test_setup_confirm_and_the_two_step_login(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email("doc")
    tokens = await register(client, "doctor", email=email)
    setup = await client.post("/v1/auth/mfa/setup", headers=bearer(tokens))
    assert setup.status_code == 200, setup.text
    secret, uri = setup.json()["secret"], urlparse(setup.json()["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert parse_qs(uri.query) == {"secret": [secret], "issuer": ["Amrutam"]}
    assert unquote(uri.path) == f"/Amrutam:{email}"

    # Not in force until confirmed: the password alone still logs in.
    plain = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert "access_token" in plain.json()

    wrong = await client.post(
        "/v1/auth/mfa/confirm", headers=bearer(tokens), json={"code": "000000"}
    )
    assert_problem(wrong, 422)
    confirm = await client.post(
        "/v1/auth/mfa/confirm", headers=bearer(tokens), json={"code": totp_code(secret)}
    )
    assert confirm.status_code == 200, confirm.text
    codes = confirm.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(RECOVERY_CODE.fullmatch(c) for c in codes)

    mfa_token = await password_step(client, email)
    # The challenge is no access token, and an access token is no challenge.
    assert_problem(
        await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {mfa_token}"}), 401
    )
    assert_problem(await verify(client, tokens["access_token"], totp_code(secret, 1)), 401)
    # The step the confirmation used is spent.
    assert_problem(await verify(client, mfa_token, totp_code(secret)), 401)

    done = await verify(client, mfa_token, totp_code(secret, 1))
    assert done.status_code == 200, done.text
    assert done.json()["user"]["email"] == email
    assert (await client.get("/v1/auth/me", headers=bearer(done.json()))).status_code == 200

    # The same code once more, with a fresh password step: replayed, refused.
    again = await verify(client, await password_step(client, email), totp_code(secret, 1))
    assert_problem(again, 401)

    audit = await actions_of(database_url, tokens["user"]["id"])
    assert [action for action, _ in audit] == [
        "auth.register",
        "auth.mfa_setup",
        "auth.login",  # the password alone, before the confirmation
        "auth.mfa_failed",  # the wrong confirmation
        "auth.mfa_enabled",
        "auth.mfa_challenged",
        "auth.mfa_failed",  # the spent step
        "auth.login",
        "auth.mfa_challenged",
        "auth.mfa_failed",  # the replay
    ]
    assert audit[7][1] == '{"second_factor": "totp"}'


async def test_a_recovery_code_works_once_in_any_case_and_spacing(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email("doc")
    tokens = await register(client, "doctor", email=email)
    _, codes = await enrol(client, tokens)
    typed = codes[0].lower().replace("-", " ")
    first = await verify(client, await password_step(client, email), typed)
    assert first.status_code == 200, first.text
    assert_problem(await verify(client, await password_step(client, email), codes[0]), 401)
    other = await verify(client, await password_step(client, email), codes[1])
    assert other.status_code == 200, other.text
    audit = await actions_of(database_url, tokens["user"]["id"])
    assert ("auth.login", '{"second_factor": "recovery_code"}') in audit


async def test_the_secret_and_recovery_codes_are_not_stored_in_clear(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tokens = await register(client, "doctor")
    secret, codes = await enrol(client, tokens)
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        sealed = await conn.fetchval(
            "SELECT secret_sealed FROM mfa_factors WHERE user_id = $1::uuid",
            tokens["user"]["id"],
        )
        hashes = await conn.fetch(
            "SELECT code_hash FROM mfa_recovery_codes WHERE user_id = $1::uuid",
            tokens["user"]["id"],
        )
    finally:
        await conn.close()
    assert secret not in sealed
    stored = {r["code_hash"] for r in hashes}
    assert len(stored) == 10
    assert not {c.replace("-", "") for c in codes} & stored
    assert hashlib.sha256(codes[0].replace("-", "").encode()).hexdigest() in stored


async def test_one_code_sent_at_once_by_many_logs_in_once(client: httpx.AsyncClient) -> None:
    email = unique_email("doc")
    tokens = await register(client, "doctor", email=email)
    secret, _ = await enrol(client, tokens)
    challenges = [await password_step(client, email) for _ in range(5)]  # the code limit
    code = totp_code(secret, 1)
    answers = await asyncio.gather(*(verify(client, c, code) for c in challenges))
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401, 401]


async def test_wrong_codes_are_limited_per_account_and_address(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email("doc")
    tokens = await register(client, "doctor", email=email)
    secret, _ = await enrol(client, tokens)
    challenge = await password_step(client, email)
    for _ in range(5):  # rate_limit_mfa_account: 5 per 5 minutes
        assert_problem(await verify(client, challenge, "123456"), 401)
    refused = await verify(client, challenge, totp_code(secret, 1))  # even the right one
    body = assert_problem(refused, 429)
    assert "second-factor codes" in body["detail"]
    assert int(refused.headers["retry-after"]) > 0
    failed = [a for a, _ in await actions_of(database_url, tokens["user"]["id"])]
    assert failed.count("auth.mfa_failed") == 5


async def test_disabling_needs_a_code_and_restores_the_one_step_login(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email("doc")
    tokens = await register(client, "doctor", email=email)
    _, codes = await enrol(client, tokens)
    again = await client.post("/v1/auth/mfa/setup", headers=bearer(tokens))
    assert_problem(again, 409)  # on already: disable first
    wrong = await client.request(
        "DELETE", "/v1/auth/mfa", headers=bearer(tokens), json={"code": "654321"}
    )
    assert_problem(wrong, 422)
    off = await client.request(
        "DELETE", "/v1/auth/mfa", headers=bearer(tokens), json={"code": codes[3]}
    )
    assert off.status_code == 204, off.text
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert "access_token" in login.json()
    twice = await client.request(
        "DELETE", "/v1/auth/mfa", headers=bearer(tokens), json={"code": codes[4]}
    )
    assert_problem(twice, 409)
    actions = [a for a, _ in await actions_of(database_url, tokens["user"]["id"])]
    assert actions.count("auth.mfa_disabled") == 1


async def test_confirm_without_setup_is_409_and_bad_bodies_are_422(
    client: httpx.AsyncClient,
) -> None:
    tokens = await register(client)
    assert_problem(
        await client.post("/v1/auth/mfa/confirm", headers=bearer(tokens), json={"code": "123456"}),
        409,
    )
    for body in ({}, {"code": 123456}, {"code": "1"}, {"code": "1" * 40}, {"code": "x", "y": 1}):
        assert_problem(
            await client.post("/v1/auth/mfa/confirm", headers=bearer(tokens), json=body), 422
        )
    assert_problem(await client.post("/v1/auth/mfa/setup"), 401)
    assert_problem(await verify(client, "not-a-token-at-all", "123456"), 401)


# --- MFA required for doctors and admins -------------------------------------------------


@pytest.fixture(scope="module")
def mfa_api(database_url: str, redis_server: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(api_env(database_url, redis_server.url(), mfa_required="true")).start()
    yield server
    server.stop()


@pytest.fixture
async def mfa_client(mfa_api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=mfa_api.url, headers={"X-Forwarded-For": random_ip()}, timeout=30
    ) as http:
        yield http


async def test_a_doctor_without_mfa_reaches_only_enrolment_until_it_enrols(
    mfa_client: httpx.AsyncClient,
) -> None:
    http = mfa_client
    tokens = await register(http, "doctor")
    profile = {
        "specialty": "Ayurveda",
        "bio": "x",
        "consultation_fee": 500,
        "timezone": "Asia/Kolkata",
    }
    refused = await http.put("/v1/doctors/me/profile", headers=bearer(tokens), json=profile)
    assert assert_problem(refused, 403)["type"] == ENROL
    assert_problem(await http.get("/v1/auth/sessions", headers=bearer(tokens)), 403)
    assert (await http.get("/v1/auth/me", headers=bearer(tokens))).status_code == 200

    await enrol(http, tokens)
    # The token in hand still says "enrol"; the next one (a refresh) does not.
    assert_problem(await http.get("/v1/auth/sessions", headers=bearer(tokens)), 403)
    fresh = await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert fresh.status_code == 200, fresh.text
    assert (await http.get("/v1/auth/sessions", headers=bearer(fresh.json()))).status_code == 200

    patient = await register(http)  # patients are not asked
    assert (await http.get("/v1/auth/sessions", headers=bearer(patient))).status_code == 200


async def test_create_admin_prints_the_enrolment_uri_when_mfa_is_required(
    mfa_client: httpx.AsyncClient, database_url: str, redis_server: RedisServer
) -> None:
    email = unique_email("admin")
    env = {
        **os.environ,
        **api_env(database_url, redis_server.url(), mfa_required="true"),
        "AMRUTAM_DATABASE_URL": as_app_role(database_url),
    }
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "amrutam.cli",
            "create-admin",
            "--email",
            email,
            "--password",
            PASSWORD,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    uri = next(line for line in made.stdout.splitlines() if line.startswith("otpauth://"))
    secret = parse_qs(urlparse(uri).query)["secret"][0]

    login = await mfa_client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    tokens = login.json()
    assert "access_token" in tokens  # not enrolled yet: tokens, for enrolment only
    assert_problem(await mfa_client.get("/v1/admin/audit-logs", headers=bearer(tokens)), 403)
    confirm = await mfa_client.post(
        "/v1/auth/mfa/confirm", headers=bearer(tokens), json={"code": totp_code(secret)}
    )
    assert confirm.status_code == 200, confirm.text
    challenge = await password_step(mfa_client, email)
    signed_in = await verify(mfa_client, challenge, totp_code(secret, 1))
    assert signed_in.status_code == 200, signed_in.text
    audit = await mfa_client.get("/v1/admin/audit-logs", headers=bearer(signed_in.json()))
    assert audit.status_code == 200, audit.text
