"""Test data made fast: users straight into the database, tokens minted like the API's."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr

from amrutam.auth.tokens import AccessTokens
from amrutam.infra.db import libpq_dsn
from amrutam.settings import Settings
from amrutam.timeutil import utcnow
from tests.helpers import TEST_JWT_SECRET, bearer, register

_tokens = AccessTokens(Settings(jwt_secret=SecretStr(TEST_JWT_SECRET), _env_file=None))  # type: ignore[call-arg]


def pg_dsn(database_url: str) -> str:
    return libpq_dsn(database_url)


async def make_admin(database_url: str) -> dict[str, str]:
    """An administrator inserted directly, in a session of its own, with a bearer header."""
    admin_id, session_id = uuid.uuid4(), uuid.uuid4()
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO users (id, email, password_hash, full_name, role) "
            "VALUES ($1, $2, '!', 'Test Admin', 'admin')",
            admin_id,
            f"admin-{admin_id.hex}@example.com",
        )
        await conn.execute(
            "INSERT INTO auth_sessions (id, user_id, expires_at) "
            "VALUES ($1, $2, now() + interval '1 day')",
            session_id,
            admin_id,
        )
    finally:
        await conn.close()
    return {"Authorization": f"Bearer {_tokens.issue(admin_id, 'admin', session_id)}"}


async def make_patients(database_url: str, count: int) -> list[dict[str, str]]:
    """Patients inserted directly (no password hashing), each in a session of its own,
    with a bearer header."""
    ids = {uuid.uuid4(): uuid.uuid4() for _ in range(count)}  # user -> session
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        await conn.copy_records_to_table(
            "users",
            records=[
                (i, f"p-{i.hex}@example.com", "!", "Load Patient", "patient", True) for i in ids
            ],
            columns=["id", "email", "password_hash", "full_name", "role", "is_active"],
        )
        expires = utcnow() + timedelta(days=1)
        await conn.copy_records_to_table(
            "auth_sessions",
            records=[(s, i, expires) for i, s in ids.items()],
            columns=["id", "user_id", "expires_at"],
        )
    finally:
        await conn.close()
    return [{"Authorization": f"Bearer {_tokens.issue(i, 'patient', s)}"} for i, s in ids.items()]


PROFILE = {
    "specialty": "Dermatology",
    "languages": ["English", "Tamil"],
    "consultation_fee": 40000,
    "experience_years": 9,
    "city": "Chennai",
    "timezone": "Asia/Kolkata",
    "bio": "Skin.",
}


async def make_doctor(http: httpx.AsyncClient, **profile: Any) -> dict[str, Any]:
    tokens = await register(http, "doctor")
    response = await http.put(
        "/v1/doctors/me/profile", json={**PROFILE, **profile}, headers=bearer(tokens)
    )
    assert response.status_code == 200, response.text
    return {**tokens, "headers": bearer(tokens), "id": tokens["user"]["id"]}


async def make_slots(
    http: httpx.AsyncClient,
    doctor: dict[str, Any],
    count: int = 1,
    start: datetime | None = None,
    minutes: int = 30,
) -> list[dict[str, Any]]:
    first = start or (utcnow() + timedelta(days=3)).replace(microsecond=0)
    slots = [
        {
            "starts_at": (first + timedelta(minutes=minutes * i)).isoformat(),
            "ends_at": (first + timedelta(minutes=minutes * (i + 1))).isoformat(),
        }
        for i in range(count)
    ]
    response = await http.post(
        "/v1/doctors/me/slots", json={"slots": slots}, headers=doctor["headers"]
    )
    assert response.status_code == 201, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def book(
    http: httpx.AsyncClient, headers: dict[str, str], slot_id: str, key: str | None = None
) -> httpx.Response:
    return await http.post(
        "/v1/appointments/book",
        json={"slot_id": slot_id},
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def a_booking_waiting_on_its_slot_row(
    http: httpx.AsyncClient, database_url: str, headers: dict[str, str], slot_id: str, key: str
) -> tuple[asyncpg.Connection, asyncio.Task[httpx.Response]]:
    """A booking held up in the database: another transaction, on the connection returned,
    holds the slot's row until it rolls back or goes away."""
    holder = await asyncpg.connect(pg_dsn(database_url))
    await holder.execute("BEGIN")
    await holder.execute(
        "SELECT 1 FROM availability_slots WHERE id = $1 FOR UPDATE", uuid.UUID(slot_id)
    )
    booking = asyncio.create_task(book(http, headers, slot_id, key))
    while not await holder.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    ):
        await asyncio.sleep(0.05)
    return holder, booking


async def booked_count(database_url: str, slot_id: str) -> int:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM appointments WHERE slot_id = $1 AND status = 'booked'",
                uuid.UUID(slot_id),
            )
        )
    finally:
        await conn.close()
