"""A change of an account's credentials ends every other session of it, at once and
audited; the session that made the change stays (G7: a session opened with a stolen
password outlived the owner's enrolment of a second factor)."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from tests.factories import pg_dsn
from tests.helpers import PASSWORD, assert_problem, bearer, enrol, register, unique_email

NEW_PASSWORD = "violet kettle orbit 42"


async def _second_session(http: httpx.AsyncClient, email: str) -> dict[str, Any]:
    login = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return dict(login.json())


async def _alive(http: httpx.AsyncClient, tokens: dict[str, Any]) -> tuple[bool, bool]:
    """(its access token is accepted, its refresh token refreshes)."""
    me = await http.get("/v1/auth/me", headers=bearer(tokens))
    fresh = await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    if fresh.status_code == 200:
        tokens.update(fresh.json())
    return me.status_code == 200, fresh.status_code == 200


async def _ended_for(database_url: str, user_id: str) -> list[tuple[str, int]]:
    """The audit rows that ended sessions: (action, how many)."""
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        return [
            (row["action"], row["ended"])
            for row in await conn.fetch(
                "SELECT action, jsonb_array_length(detail->'sessions_ended') AS ended "
                "FROM audit_logs WHERE entity_id = $1 AND detail ? 'sessions_ended'",
                user_id,
            )
        ]
    finally:
        await conn.close()


async def test_enrolling_a_second_factor_ends_the_other_sessions_and_keeps_this_one(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email()
    mine = await register(client, email=email)
    stolen = await _second_session(client, email)
    await enrol(client, mine)
    assert await _alive(client, stolen) == (False, False)
    assert await _alive(client, mine) == (True, True)
    assert await _ended_for(database_url, mine["user"]["id"]) == [("auth.mfa_enabled", 1)]


async def test_changing_the_password_ends_the_other_sessions_and_the_old_password(
    client: httpx.AsyncClient, database_url: str
) -> None:
    email = unique_email()
    mine = await register(client, email=email)
    stolen = await _second_session(client, email)
    changed = await client.post(
        "/v1/auth/password",
        headers=bearer(mine),
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 204, changed.text
    assert await _alive(client, stolen) == (False, False)
    assert await _alive(client, mine) == (True, True)
    assert_problem(
        await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}), 401
    )
    new = await client.post("/v1/auth/login", json={"email": email, "password": NEW_PASSWORD})
    assert new.status_code == 200, new.text
    assert await _ended_for(database_url, mine["user"]["id"]) == [("auth.password_changed", 1)]


async def test_a_change_needs_the_current_password_and_a_strong_new_one(
    client: httpx.AsyncClient,
) -> None:
    email = unique_email()
    mine = await register(client, email=email)
    other = await _second_session(client, email)
    for body in (
        {"current_password": "not it at all 1", "new_password": NEW_PASSWORD},
        {"current_password": PASSWORD, "new_password": "password123"},
        {"current_password": PASSWORD, "new_password": email},
        {"current_password": PASSWORD},
    ):
        refused = await client.post("/v1/auth/password", headers=bearer(mine), json=body)
        assert_problem(refused, 422)
    assert_problem(await client.post("/v1/auth/password", json={}), 401)
    assert await _alive(client, other) == (True, True)
