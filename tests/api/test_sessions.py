"""Sessions people can see and end, and the end of their access tokens at once: with
Redis answering (the marker rides on the rate-limit hit) and without it (the database
decides)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from redis.asyncio import Redis

from amrutam.auth.sessions import Revocations
from amrutam.dev.servers import RedisServer, free_port
from tests.factories import make_doctor, make_slots, pg_dsn
from tests.helpers import (
    PASSWORD,
    api_env,
    assert_problem,
    bearer,
    enrol,
    password_step,
    register,
    totp_code,
    unique_email,
    verify_code,
)
from tests.servers import ApiServer


async def log_in(http: httpx.AsyncClient, email: str, agent: str) -> dict[str, Any]:
    login = await http.post(
        "/v1/auth/login",
        json={"email": email, "password": PASSWORD},
        headers={"User-Agent": agent},
    )
    assert login.status_code == 200, login.text
    data: dict[str, Any] = login.json()
    return data


async def open_sessions(http: httpx.AsyncClient, tokens: dict[str, Any]) -> list[dict[str, Any]]:
    listed = await http.get("/v1/auth/sessions", headers=bearer(tokens))
    assert listed.status_code == 200, listed.text
    sessions: list[dict[str, Any]] = listed.json()
    return sessions


async def test_each_login_is_a_session_listed_with_its_device(client: httpx.AsyncClient) -> None:
    email = unique_email()
    await register(client, email=email)
    phone = await log_in(client, email, "Amrutam/2.1 (Android 14)")
    laptop = await log_in(client, email, "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0")
    sessions = await open_sessions(client, laptop)
    assert len(sessions) == 3  # registration, phone, laptop
    assert set(sessions[0]) == {"id", "created_at", "last_used_at", "user_agent", "ip", "current"}
    current = [s for s in sessions if s["current"]]
    assert len(current) == 1
    assert current[0]["user_agent"].startswith("Mozilla/5.0")
    assert current[0]["ip"] == client.headers["X-Forwarded-For"]
    assert {s["user_agent"] for s in sessions} >= {"Amrutam/2.1 (Android 14)"}

    # A refresh keeps the session (one per token family) and marks it used.
    before = next(s for s in await open_sessions(client, phone) if s["current"])
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]}
    )
    after = next(s for s in await open_sessions(client, refreshed.json()) if s["current"])
    assert after["id"] == before["id"]
    assert after["last_used_at"] > before["last_used_at"]
    assert len(await open_sessions(client, laptop)) == 3


async def test_revoking_a_session_ends_its_tokens_at_once(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email()
    await register(client, email=email)
    phone = await log_in(client, email, "phone")
    laptop = await log_in(client, email, "laptop")
    assert (await client.get("/v1/auth/me", headers=bearer(phone))).status_code == 200
    phone_id = next(s["id"] for s in await open_sessions(client, phone) if s["current"])

    ended = await client.delete(f"/v1/auth/sessions/{phone_id}", headers=bearer(laptop))
    assert ended.status_code == 204, ended.text
    body = assert_problem(await client.get("/v1/auth/me", headers=bearer(phone)), 401)
    assert "ended" in body["detail"]
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert_problem(refresh, 401)
    assert phone_id not in {s["id"] for s in await open_sessions(client, laptop)}
    # Once ended, it is gone: a second revocation finds nothing.
    again = await client.delete(f"/v1/auth/sessions/{phone_id}", headers=bearer(laptop))
    assert_problem(again, 404)

    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        detail = await conn.fetchval(
            "SELECT detail->>'session_id' FROM audit_logs WHERE action = 'auth.session_revoked' "
            "AND actor_id = $1::uuid",
            laptop["user"]["id"],
        )
    finally:
        await conn.close()
    assert detail == phone_id


async def test_another_users_session_is_404_and_stays_open(client: httpx.AsyncClient) -> None:
    mine, theirs = await register(client), await register(client)
    their_id = (await open_sessions(client, theirs))[0]["id"]
    assert_problem(await client.delete(f"/v1/auth/sessions/{their_id}", headers=bearer(mine)), 404)
    assert (await client.get("/v1/auth/me", headers=bearer(theirs))).status_code == 200
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_problem(await client.delete(f"/v1/auth/sessions/{unknown}", headers=bearer(mine)), 404)
    assert_problem(await client.delete("/v1/auth/sessions/not-a-uuid", headers=bearer(mine)), 404)
    assert_problem(await client.get("/v1/auth/sessions"), 401)


async def test_logout_ends_the_access_token_at_once(client: httpx.AsyncClient) -> None:
    tokens = await register(client)
    other = await log_in(client, tokens["user"]["email"], "other device")
    out = await client.post("/v1/auth/logout", headers=bearer(tokens))
    assert out.status_code == 204
    assert_problem(await client.get("/v1/auth/me", headers=bearer(tokens)), 401)
    assert_problem(await client.post("/v1/auth/logout", headers=bearer(tokens)), 401)
    # Writes too, and an Idempotency-Key does not replay anything to an ended session.
    booking = await client.post(
        "/v1/appointments/book",
        headers={**bearer(tokens), "Idempotency-Key": "after-logout"},
        json={"slot_id": "00000000-0000-4000-8000-000000000000"},
    )
    assert_problem(booking, 401)
    # The other session is not touched.
    assert (await client.get("/v1/auth/me", headers=bearer(other))).status_code == 200


async def test_an_ended_session_sees_only_what_anyone_sees_of_its_slots(
    client: httpx.AsyncClient,
) -> None:
    """The open-slot listing is a cached read (its caller's session is not checked);
    any other view of a doctor's slots still is, however the status is spelled."""
    doctor = await make_doctor(client)
    [slot] = await make_slots(client, doctor)
    listing = f"/v1/doctors/{doctor['id']}/slots"
    mine = await client.get(listing, params={"status": "all"}, headers=doctor["headers"])
    assert [s["id"] for s in mine.json()["items"]] == [slot["id"]]
    assert (await client.post("/v1/auth/logout", headers=doctor["headers"])).status_code == 204

    public = await client.get(listing, headers=doctor["headers"])
    assert public.status_code == 200
    assert [s["id"] for s in public.json()["items"]] == [slot["id"]]
    # The ended session's token counts as no caller here: the private views are refused.
    for params in ({"status": "all"}, {"status": "booked"}):
        assert_problem(await client.get(listing, params=params, headers=doctor["headers"]), 403)
    for query in ("status=open&status=all", "status=", "status=All"):
        assert_problem(await client.get(f"{listing}?{query}", headers=doctor["headers"]), 422)


# --- without Redis ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis-sessions", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sessions_api(database_url: str, own_redis: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(api_env(database_url, own_redis.url()), workers=1).start()
    yield server
    server.stop()


async def test_with_redis_away_the_database_decides(
    sessions_api: ApiServer, own_redis: RedisServer, database_url: str
) -> None:
    async with httpx.AsyncClient(
        base_url=sessions_api.url, headers={"X-Forwarded-For": "10.78.0.1"}, timeout=10
    ) as http:
        email = unique_email()
        ended_before = await register(http, email=email)
        await http.post("/v1/auth/logout", headers=bearer(ended_before))
        ended_during = await log_in(http, email, "b")
        kept = await log_in(http, email, "c")

        own_redis.stop()  # not persistent: every marker is lost with it
        try:
            assert (await http.get("/v1/auth/me", headers=bearer(kept))).status_code == 200
            assert_problem(await http.get("/v1/auth/me", headers=bearer(ended_before)), 401)
            out = await http.post("/v1/auth/logout", headers=bearer(ended_during))
            assert out.status_code == 204
            assert_problem(await http.get("/v1/auth/me", headers=bearer(ended_during)), 401)
        finally:
            own_redis.start()

        # Redis is back, empty: the periodic task writes the markers again (run here as
        # the worker runs it), and Redis answers "ended" on its own.
        redis = Redis.from_url(own_redis.url())
        conn = await asyncpg.connect(pg_dsn(database_url))
        try:
            assert await redis.keys("revoked:*") == []
            resent = await Revocations(redis, 900).resend(conn)
            assert resent >= 2
            ended = [_session_of(t) for t in (ended_before, ended_during)]
            assert {f"revoked:{s}".encode() for s in ended} <= set(await redis.keys("revoked:*"))
            # Make the database say "open": from now on only the markers refuse the tokens.
            when = await conn.fetch(
                "UPDATE auth_sessions s SET revoked_at = NULL FROM auth_sessions old "
                "WHERE s.id = old.id AND s.id = ANY($1::uuid[]) RETURNING s.id, old.revoked_at",
                ended,
            )
            assert (await http.get("/readyz")).status_code == 200
            await asyncio.sleep(1.2)  # past the limiter's pause after a Redis failure
            for tokens in (ended_before, ended_during):
                assert_problem(await http.get("/v1/auth/me", headers=bearer(tokens)), 401)
            assert (await http.get("/v1/auth/me", headers=bearer(kept))).status_code == 200
            await conn.executemany(
                "UPDATE auth_sessions SET revoked_at = $2 WHERE id = $1",
                [(r["id"], r["revoked_at"]) for r in when],
            )
        finally:
            await conn.close()
            await redis.aclose()


def _session_of(tokens: dict[str, Any]) -> uuid.UUID:
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return uuid.UUID(claims["fam"])


async def test_a_second_factor_login_works_and_stays_limited_with_redis_away(
    sessions_api: ApiServer, own_redis: RedisServer
) -> None:
    async with httpx.AsyncClient(
        base_url=sessions_api.url, headers={"X-Forwarded-For": "10.78.0.2"}, timeout=10
    ) as http:
        email = unique_email("doc")
        secret, _ = await enrol(http, await register(http, "doctor", email=email))
        challenge = await password_step(http, email)
        own_redis.stop()
        try:
            # The code throttle counts in memory now: four wrong codes, then the right one.
            for _ in range(4):
                assert_problem(await verify_code(http, challenge, "999999"), 401)
            signed_in = await verify_code(http, challenge, totp_code(secret, 1))
            assert signed_in.status_code == 200, signed_in.text
            assert (
                await http.get("/v1/auth/me", headers=bearer(signed_in.json()))
            ).status_code == 200
            for _ in range(5):
                assert_problem(await verify_code(http, challenge, "999999"), 401)
            assert_problem(await verify_code(http, challenge, "999999"), 429)
        finally:
            own_redis.start()
