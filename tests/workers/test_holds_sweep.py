"""The beat task that records expired holds, on the real worker."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
from celery import Celery

from tests.factories import make_doctor, make_slots, pg_dsn
from tests.helpers import register
from tests.workers.conftest import Worker


async def test_expired_holds_end_with_their_release_recorded(
    worker: Worker, broker: Celery, client: httpx.AsyncClient, database_url: str
) -> None:
    doctor = await make_doctor(client)
    (slot,) = await make_slots(client, doctor)
    patient = await register(client)
    hold_id = uuid.uuid4()
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO slot_holds (id, slot_id, doctor_id, patient_id, expires_at) "
            "VALUES ($1, $2, $3, $4, now() - interval '1 second')",
            hold_id,
            uuid.UUID(slot["id"]),
            uuid.UUID(doctor["id"]),
            uuid.UUID(patient["user"]["id"]),
        )
        broker.send_task("workers.tasks.end_expired_holds", queue="default")

        async def ended() -> str | None:
            found: str | None = await conn.fetchval(
                "SELECT ended_as FROM slot_holds WHERE id = $1", hold_id
            )
            return found

        for _ in range(150):
            if await ended():
                break
            await asyncio.sleep(0.2)
        assert await ended() == "expired"
        audit = await conn.fetchrow(
            "SELECT actor_role, detail->>'reason' AS reason FROM audit_logs "
            "WHERE action = 'slot.released' AND entity_id = $1",
            slot["id"],
        )
        event = await conn.fetchval(
            "SELECT payload->>'reason' FROM outbox WHERE event_type = 'slot.released' "
            "AND aggregate_id = $1",
            uuid.UUID(slot["id"]),
        )
    finally:
        await conn.close()
    assert (audit["actor_role"], audit["reason"]) == ("system", "expired")
    assert event == "expired"
