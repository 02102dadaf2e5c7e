"""Every path of /v1/auth against the real server, database and Redis."""

from __future__ import annotations

import time
import uuid

import asyncpg
import httpx
import jwt

from tests.factories import pg_dsn
from tests.helpers import (
    PASSWORD,
    TEST_JWT_SECRET,
    assert_problem,
    bearer,
    register,
    unique_email,
)


async def test_register_returns_user_and_tokens(client: httpx.AsyncClient) -> None:
    email = unique_email("Mixed.Case")
    data = await register(client, "doctor", email=email, phone="+91 98765 43210")
    assert data["user"]["email"] == email.lower()
    assert data["user"]["role"] == "doctor"
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 900
    assert "password_hash" not in data["user"]
    claims = jwt.decode(data["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["role"] == "doctor"
    assert claims["sub"] == data["user"]["id"]
    assert jwt.get_unverified_header(data["access_token"])["kid"] == "k1"


async def test_register_duplicate_email_is_409_case_insensitive(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    again = await client.post(
        "/v1/auth/register",
        json={"email": email.upper(), "password": PASSWORD, "full_name": "X", "role": "patient"},
    )
    assert_problem(again, 409)


async def test_register_refuses_admin_role_and_short_password(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/register",
        json={"email": unique_email(), "password": "short", "full_name": "X", "role": "admin"},
    )
    body = assert_problem(response, 422)
    assert {e["field"] for e in body["errors"]} == {"password", "role"}


async def test_login_and_me(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    me = await client.get("/v1/auth/me", headers=bearer(login.json()))
    assert me.status_code == 200
    assert me.json()["email"] == email


async def test_bad_credentials_get_the_same_401(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    wrong = await client.post("/v1/auth/login", json={"email": email, "password": "wrong-pass!!"})
    unknown = await client.post(
        "/v1/auth/login", json={"email": unique_email(), "password": PASSWORD}
    )
    a, b = assert_problem(wrong, 401), assert_problem(unknown, 401)
    assert a["detail"] == b["detail"]
    assert wrong.headers["www-authenticate"].startswith("Bearer")


async def test_refresh_rotates_and_old_token_stops_working(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    first = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    second = await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert second.status_code == 200


async def test_refresh_reuse_revokes_the_whole_family(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    rotated = (
        await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).json()
    replay = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(replay, 401)
    # The attacker's replay ended the family: the legitimate newer token is dead too.
    newer = await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert_problem(newer, 401)


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/refresh", json={"refresh_token": "x" * 43})
    assert_problem(response, 401)


async def test_expired_refresh_token_is_401(client: httpx.AsyncClient, database_url: str) -> None:
    tokens = await register(client)
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        await conn.execute(
            "UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1",
            uuid.UUID(tokens["user"]["id"]),
        )
    finally:
        await conn.close()
    response = await client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    body = assert_problem(response, 401)
    assert "expired" in body["detail"]


async def test_logout_revokes_the_refresh_family(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    out = await client.post("/v1/auth/logout", headers=bearer(tokens))
    assert out.status_code == 204
    response = await client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert_problem(response, 401)


async def test_logout_needs_a_token(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/v1/auth/logout"), 401)


async def test_me_rejects_missing_malformed_forged_and_expired_tokens(
    client: httpx.AsyncClient,
) -> None:
    tokens = await register(client)
    assert_problem(await client.get("/v1/auth/me"), 401)
    assert_problem(await client.get("/v1/auth/me", headers={"Authorization": "Basic abc"}), 401)
    assert_problem(await client.get("/v1/auth/me", headers={"Authorization": "Bearer"}), 401)
    claims = jwt.decode(tokens["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    forged = jwt.encode(claims, "another-secret-" * 4, algorithm="HS256", headers={"kid": "k1"})
    assert_problem(
        await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {forged}"}), 401
    )
    expired_claims = {**claims, "iat": int(time.time()) - 1000, "exp": int(time.time()) - 10}
    expired = jwt.encode(expired_claims, TEST_JWT_SECRET, algorithm="HS256", headers={"kid": "k1"})
    body = assert_problem(
        await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {expired}"}), 401
    )
    assert "expired" in body["detail"]
    none_alg = jwt.encode(claims, key=None, algorithm="none", headers={"kid": "k1"})  # type: ignore[arg-type]
    assert_problem(
        await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {none_alg}"}), 401
    )


async def test_deactivated_user_cannot_log_in_or_refresh(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email()
    tokens = await register(client, email=email)
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        await conn.execute("UPDATE users SET is_active = false WHERE email = $1", email)
    finally:
        await conn.close()
    assert_problem(
        await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}), 401
    )
    assert_problem(
        await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
    )
