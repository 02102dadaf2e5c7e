"""Hostile and careless input gets a 4xx problem, never a 500, and commits nothing.

Each test names the attack of the security review (F1-F4, F15, F27) it stops.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import asyncpg
import httpx
import jwt
import orjson
import pytest
from redis.asyncio import Redis

from amrutam.dev.servers import RedisServer
from tests.factories import book, make_doctor, make_slots, pg_dsn
from tests.helpers import TEST_JWT_SECRET, assert_problem, bearer, register, unique_email


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


@pytest.mark.parametrize(
    "params",
    [{"q": "ab\x00cd"}, {"specialty": "x\x00"}, {"city": "Pune\x00"}, {"language": "en\x00"}],
)
async def test_nul_bytes_in_search_are_refused(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    """F1: PostgreSQL cannot store or compare NUL; it is a 422 at the boundary."""
    assert_problem(await client.get("/v1/doctors", params=params), 422)


async def test_nul_bytes_in_bodies_are_refused_anywhere_in_them(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email()
    body = {"email": email, "password": "probe-password-123", "full_name": "Asha\x00Patient"}
    refused = await client.post("/v1/auth/register", json={**body, "role": "patient"})
    assert_problem(refused, 422)
    doctor = await make_doctor(client)
    profile = {
        "specialty": "cardiology",
        "languages": ["en\x00"],
        "consultation_fee": 100,
        "experience_years": 1,
        "timezone": "UTC",
    }
    assert_problem(
        await client.put("/v1/doctors/me/profile", json=profile, headers=doctor["headers"]), 422
    )
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM users WHERE email = $1", email) == 0
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "params",
    [
        {"min_fee": "3000000000"},
        {"max_fee": "1" + "0" * 30},
        {"min_fee": "-1"},
        {"sort": "fee", "cursor": _cursor(["1099511627776", str(uuid.uuid4())])},
        {"sort": "rating", "cursor": _cursor(["1e99999999", str(uuid.uuid4())])},
    ],
)
async def test_numbers_outside_the_columns_range_are_refused(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    """F2: out-of-range integers and decimals never reach asyncpg."""
    assert_problem(await client.get("/v1/doctors", params=params), 422)


async def test_dates_outside_what_postgresql_holds_are_refused(
    client: httpx.AsyncClient,
) -> None:
    """F3: year 1 and 9999, with offsets that overflow on conversion."""
    doctor = await make_doctor(client)
    patient = await register(client)
    for path, params, headers in (
        ("/v1/doctors", {"available_on": "9999-12-31"}, {}),
        (f"/v1/doctors/{doctor['id']}/slots", {"from": "0001-01-01T00:00:00+14:00"}, {}),
        (f"/v1/doctors/{doctor['id']}/slots", {"to": "9999-12-31T23:59:59-14:00"}, {}),
        ("/v1/appointments", {"from": "0001-01-01T00:00:00+14:00"}, bearer(patient)),
    ):
        assert_problem(await client.get(path, params=params, headers=headers), 422)


async def test_a_slot_in_year_9999_is_refused_and_nothing_is_committed(
    client: httpx.AsyncClient,
) -> None:
    """F3: the explicit slot used to commit, then fail with a 500 on the cache bump."""
    doctor = await make_doctor(client, timezone="Asia/Kolkata")
    far = {
        "slots": [
            {"starts_at": "9999-12-31T20:00:00-05:00", "ends_at": "9999-12-31T20:30:00-05:00"}
        ]
    }
    assert_problem(
        await client.post("/v1/doctors/me/slots", json=far, headers=doctor["headers"]), 422
    )
    rule = {
        "from_date": "9999-12-20",
        "to_date": "9999-12-31",
        "weekdays": [0, 1, 2, 3, 4, 5, 6],
        "start_time": "09:00",
        "end_time": "10:00",
        "slot_minutes": 30,
        "timezone": "UTC",
    }
    assert_problem(
        await client.post("/v1/doctors/me/slots", json=rule, headers=doctor["headers"]), 422
    )
    listed = await client.get(
        f"/v1/doctors/{doctor['id']}/slots", params={"status": "all"}, headers=doctor["headers"]
    )
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    "values",
    [[1, 2], [None, str(uuid.uuid4())], [{}, str(uuid.uuid4())], ["2026-01-01T00:00:00+00:00", 5]],
)
async def test_tampered_cursors_are_refused_on_every_list(
    client: httpx.AsyncClient, values: list[Any]
) -> None:
    """F4: cursors of the wrong shape are a 422 'the cursor is not valid'."""
    doctor = await make_doctor(client)
    patient = await register(client)
    cursor = _cursor(values)
    for path, headers in (
        ("/v1/doctors", {}),
        (f"/v1/doctors/{doctor['id']}/slots", {}),
        ("/v1/appointments", bearer(patient)),
        ("/v1/patients/me/prescriptions", bearer(patient)),
    ):
        body = assert_problem(
            await client.get(path, params={"cursor": cursor}, headers=headers), 422
        )
        assert "cursor" in body["detail"]


async def test_a_tz_database_folder_or_a_time_with_an_offset_is_a_422(
    client: httpx.AsyncClient,
) -> None:
    """F15: 'America' is a folder (IsADirectoryError was a 503); '09:00+05:30' was a 500."""
    doctor = await make_doctor(client)
    profile = {
        "specialty": "cardiology",
        "languages": ["english"],
        "consultation_fee": 100,
        "experience_years": 1,
        "timezone": "America",
    }
    assert_problem(
        await client.put("/v1/doctors/me/profile", json=profile, headers=doctor["headers"]), 422
    )
    rule = {
        "from_date": "2030-01-01",
        "to_date": "2030-01-07",
        "weekdays": [0],
        "start_time": "09:00+05:30",
        "end_time": "10:00",
        "slot_minutes": 30,
        "timezone": "Asia/Kolkata",
    }
    assert_problem(
        await client.post("/v1/doctors/me/slots", json=rule, headers=doctor["headers"]), 422
    )


async def test_a_parameter_given_twice_or_left_blank_is_refused(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/doctors?sort=fee&sort=-fee"), 422)
    assert_problem(await client.get("/v1/doctors?limit="), 422)


async def test_a_signed_token_with_odd_claims_is_a_401(client: httpx.AsyncClient) -> None:
    """F27: a list-valued family claim or an unknown role (needs the key) was a 500."""
    patient = await register(client)
    claims = jwt.decode(patient["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    for odd in ({"fam": ["x"]}, {"role": "superuser"}, {"sub": 5}):
        token = jwt.encode(
            {**claims, **odd}, TEST_JWT_SECRET, algorithm="HS256", headers={"kid": "k1"}
        )
        assert_problem(
            await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"}), 401
        )


async def test_a_stale_token_does_not_block_public_routes_or_login(
    client: httpx.AsyncClient,
) -> None:
    """F16: clients that always send their last token can still search, log in, refresh."""
    email = unique_email()
    tokens = await register(client, email=email)
    stale = {"Authorization": "Bearer not-a-token"}
    assert (await client.get("/v1/doctors", headers=stale)).status_code == 200
    login = await client.post(
        "/v1/auth/login", json={"email": email, "password": "correct horse battery"}, headers=stale
    )
    assert login.status_code == 200, login.text
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, headers=stale
    )
    assert refreshed.status_code == 200, refreshed.text
    body = assert_problem(await client.get("/v1/auth/me", headers=stale), 401)
    assert "invalid access token" in body["detail"]


async def test_invalid_tokens_are_rate_limited_as_anonymous_callers(
    strict_client: httpx.AsyncClient,
) -> None:
    """F17: a bad bearer token used to skip the rate limiter."""
    statuses = [
        (await strict_client.get("/v1/doctors", headers={"Authorization": "Bearer x"})).status_code
        for _ in range(25)
    ]
    assert 429 in statuses
    limited = await strict_client.get("/v1/doctors", headers={"Authorization": "Bearer x"})
    assert limited.headers["ratelimit-policy"].startswith('"anonymous"')


async def test_token_and_clinical_responses_are_not_cacheable(client: httpx.AsyncClient) -> None:
    """F19: no-store on tokens and on anything read with credentials; nosniff everywhere."""
    tokens = await register(client)
    login = await client.post(
        "/v1/auth/login",
        json={"email": tokens["user"]["email"], "password": "correct horse battery"},
    )
    assert login.headers["cache-control"] == "no-store"
    mine = await client.get("/v1/appointments", headers=bearer(tokens))
    assert mine.headers["cache-control"] == "no-store"
    for response in (login, mine, await client.get("/v1/doctors")):
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_made_up_methods_create_no_new_metric_series(client: httpx.AsyncClient) -> None:
    """F23: the method label of unknown methods is OTHER."""
    for n in range(3):
        await client.request(f"X{uuid.uuid4().hex[:6].upper()}{n}", "/v1/doctors")
    text = (await client.get("/metrics")).text
    assert 'method="OTHER"' in text
    assert not [line for line in text.splitlines() if 'method="X' in line]


async def test_the_request_id_of_the_audit_trail_is_the_servers(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """F21: a client-chosen X-Request-ID is echoed and kept in the detail, never stored
    as the row's request id (it could plant or collide correlation ids)."""
    email = unique_email()
    forged = f"forged-{uuid.uuid4().hex[:8]}"
    await client.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": "probe-password-123",
            "full_name": "R",
            "role": "patient",
        },
        headers={"X-Request-ID": forged},
    )
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        row = await conn.fetchrow(
            "SELECT request_id, detail->>'client_request_id' AS client FROM audit_logs "
            "WHERE action = 'auth.register' AND detail->>'client_request_id' = $1",
            forged,
        )
    finally:
        await conn.close()
    assert row is not None
    assert row["client"] == forged
    assert row["request_id"] != forged
    assert len(row["request_id"]) == 32


async def test_common_passwords_are_refused(client: httpx.AsyncClient) -> None:
    """F20: length alone let 'aaaaaaaaaa', '1234567890' and 'password12' through."""
    for password in ("aaaaaaaaaa", "1234567890", "password12", "qwertyuiop"):
        refused = await client.post(
            "/v1/auth/register",
            json={
                "email": unique_email(),
                "password": password,
                "full_name": "P",
                "role": "patient",
            },
        )
        assert_problem(refused, 422)


def _idempotency_record(scope: str, key: str) -> str:
    return f"idem:{scope}:{hashlib.sha256(key.encode()).hexdigest()}"


async def test_a_huge_invalid_body_gets_a_small_answer_and_a_small_record(
    client: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    """F11: 1,000 invalid slots gave a 208 KB answer, kept 24 h under the key."""
    doctor = await make_doctor(client)
    key = uuid.uuid4().hex
    bad = {"slots": [{"starts_at": "x", "ends_at": "y"}] * 1000}
    headers = {**doctor["headers"], "Idempotency-Key": key}
    first = await client.post("/v1/doctors/me/slots", json=bad, headers=headers)
    body = assert_problem(first, 422)
    assert len(body["errors"]) <= 20
    assert len(first.content) < 8000
    again = await client.post("/v1/doctors/me/slots", json=bad, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"  # the contract's replay holds
    redis = Redis.from_url(redis_server.url())
    stored = await redis.memory_usage(_idempotency_record(f"user:{doctor['id']}", key))
    await redis.aclose()
    assert stored is not None
    assert stored < 16_000


async def test_token_responses_are_kept_for_replay_only_encrypted(
    client: httpx.AsyncClient, redis_server: RedisServer
) -> None:
    """F10: login and refresh answers (access and refresh tokens) sat in Redis in clear."""
    tokens = await register(client)
    credentials = {"email": tokens["user"]["email"], "password": "correct horse battery"}
    key = uuid.uuid4().hex
    first = await client.post("/v1/auth/login", json=credentials, headers={"Idempotency-Key": key})
    again = await client.post("/v1/auth/login", json=credentials, headers={"Idempotency-Key": key})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    redis = Redis.from_url(redis_server.url())
    raw = await redis.get(_idempotency_record(f"ip:{client.headers['x-forwarded-for']}", key))
    await redis.aclose()
    assert raw is not None
    for secret in (first.json()["access_token"], first.json()["refresh_token"]):
        assert secret.encode() not in raw


async def test_a_booking_key_is_free_again_after_24_hours(
    client: httpx.AsyncClient, database_url: str, redis_server: RedisServer
) -> None:
    """F25: the database copy of a booking key used to refuse it forever."""
    doctor = await make_doctor(client)
    patient = await register(client)
    first, second = await make_slots(client, doctor, count=2)
    key = uuid.uuid4().hex
    assert (await book(client, bearer(patient), first["id"], key)).status_code == 201
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:  # a day passes: the appointment ages and Redis forgets the key
        await conn.execute(
            "UPDATE appointments SET created_at = created_at - interval '25 hours' "
            "WHERE idempotency_key = $1",
            key,
        )
    finally:
        await conn.close()
    redis = Redis.from_url(redis_server.url())
    await redis.delete(_idempotency_record(f"user:{patient['user']['id']}", key))
    await redis.aclose()
    again = await book(client, bearer(patient), second["id"], key)
    assert again.status_code == 201, again.text
    assert again.json()["slot_id"] == second["id"]
