"""The visit's logic against the review's attacks: F7 (state machine), F9 (a prescription
retried while Redis is away), F12 (slot hoarding), F21 (reads that leave no trace)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from amrutam.dev.servers import RedisServer, free_port
from amrutam.timeutil import utcnow
from tests.factories import book, make_doctor, make_slots, pg_dsn
from tests.helpers import api_env, assert_problem, bearer, register
from tests.servers import ApiServer

ITEM = {"medicine": "Amoxicillin", "dosage": "500 mg", "frequency": "3/day", "duration_days": 5}


async def _started_visit(http: httpx.AsyncClient) -> dict[str, Any]:
    doctor, patient = await make_doctor(http), await register(http)
    first, second = await make_slots(http, doctor, count=2)
    appointment = (await book(http, bearer(patient), first["id"])).json()
    started = await http.post(
        f"/v1/appointments/{appointment['id']}/consultation", headers=doctor["headers"]
    )
    assert started.status_code == 201, started.text
    return {
        "doctor": doctor,
        "patient": patient,
        "appointment": appointment,
        "consultation": started.json(),
        "free_slot": second,
    }


async def test_a_started_visit_pins_its_appointment(client: httpx.AsyncClient) -> None:
    """F7: cancel and reschedule during a consultation are refused; the slot stays taken."""
    visit = await _started_visit(client)
    appointment, patient = visit["appointment"], bearer(visit["patient"])
    assert_problem(
        await client.post(f"/v1/appointments/{appointment['id']}/cancel", headers=patient), 409
    )
    assert_problem(
        await client.post(
            f"/v1/appointments/{appointment['id']}/cancel", headers=visit["doctor"]["headers"]
        ),
        409,
    )
    moved = await client.post(
        f"/v1/appointments/{appointment['id']}/reschedule",
        json={"slot_id": visit["free_slot"]["id"]},
        headers=patient,
    )
    assert_problem(moved, 409)
    other = await register(client)
    assert_problem(await book(client, bearer(other), appointment["slot_id"]), 409)


async def test_completing_a_visit_never_revives_a_cancelled_appointment(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """F7: even if an appointment ended cancelled, completing its visit leaves it so."""
    visit = await _started_visit(client)
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:  # a cancellation that got in before this rule existed
        await conn.execute(
            "UPDATE appointments SET status = 'cancelled' WHERE id = $1",
            uuid.UUID(visit["appointment"]["id"]),
        )
    finally:
        await conn.close()
    done = await client.post(
        f"/v1/consultations/{visit['consultation']['id']}/complete",
        json={"notes": "seen"},
        headers=visit["doctor"]["headers"],
    )
    assert done.status_code == 200, done.text
    after = await client.get(
        f"/v1/appointments/{visit['appointment']['id']}", headers=bearer(visit["patient"])
    )
    assert after.json()["status"] == "cancelled"


async def test_reads_of_others_records_and_of_appointments_leave_a_trace(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """F21: probing another patient's consultation was invisible; appointment reads too."""
    visit = await _started_visit(client)
    prober = await register(client)
    consultation_id = visit["consultation"]["id"]
    assert_problem(
        await client.get(f"/v1/consultations/{consultation_id}", headers=bearer(prober)), 404
    )
    read = await client.get(
        f"/v1/appointments/{visit['appointment']['id']}", headers=bearer(visit["patient"])
    )
    assert read.status_code == 200
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT action, actor_id::text FROM audit_logs WHERE entity_id = ANY($1::text[])",
            [consultation_id, visit["appointment"]["id"]],
        )
    finally:
        await conn.close()
    actions = {(r["action"], r["actor_id"]) for r in rows}
    assert ("consultation.view_denied", prober["user"]["id"]) in actions
    assert ("appointment.viewed", visit["patient"]["user"]["id"]) in actions


@pytest.fixture(scope="module")
def capped_api(database_url: str, redis_server: RedisServer) -> Iterator[ApiServer]:
    env = api_env(
        database_url, redis_server.url(5), max_open_bookings="3", max_open_bookings_per_doctor="2"
    )
    server = ApiServer(env, workers=1).start()
    yield server
    server.stop()


async def test_one_patient_cannot_hoard_a_doctors_slots(capped_api: ApiServer) -> None:
    """F12: one new patient booked all 30 slots of a doctor."""
    async with httpx.AsyncClient(base_url=capped_api.url, timeout=30) as http:
        doctor, other = await make_doctor(http), await make_doctor(http)
        patient = bearer(await register(http))
        slots = await make_slots(http, doctor, count=3)
        assert (await book(http, patient, slots[0]["id"])).status_code == 201
        assert (await book(http, patient, slots[1]["id"])).status_code == 201
        body = assert_problem(await book(http, patient, slots[2]["id"]), 409)
        assert "with this doctor" in body["detail"]
        later = utcnow().replace(microsecond=0) + timedelta(days=5)  # no overlap with the first
        elsewhere = await make_slots(http, other, count=2, start=later)
        assert (await book(http, patient, elsewhere[0]["id"])).status_code == 201
        assert_problem(await book(http, patient, elsewhere[1]["id"]), 409)  # 3 in all
        cancelled = await http.get("/v1/appointments", headers=patient)
        first = cancelled.json()["items"][0]["id"]
        assert (
            await http.post(f"/v1/appointments/{first}/cancel", headers=patient)
        ).status_code == 200
        assert (await book(http, patient, elsewhere[1]["id"])).status_code == 201


@pytest.fixture(scope="module")
def flaky_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis-prescriptions", free_port())
    server.start()
    yield server
    server.stop()


async def test_a_prescription_retried_while_redis_is_away_is_issued_once(
    database_url: str, flaky_redis: RedisServer
) -> None:
    """F9: without Redis the Idempotency-Key used to be ignored: two prescriptions."""
    server = ApiServer(api_env(database_url, flaky_redis.url()), workers=1).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            visit = await _started_visit(http)
            flaky_redis.stop()
            path = f"/v1/consultations/{visit['consultation']['id']}/prescriptions"
            headers = {**visit["doctor"]["headers"], "Idempotency-Key": uuid.uuid4().hex}
            first = await http.post(path, json={"items": [ITEM]}, headers=headers)
            again = await http.post(path, json={"items": [ITEM]}, headers=headers)
            assert first.status_code == again.status_code == 201, (first.text, again.text)
            assert again.json()["id"] == first.json()["id"]
            assert again.headers["idempotent-replayed"] == "true"
            mine = await http.get("/v1/patients/me/prescriptions", headers=bearer(visit["patient"]))
            assert len(mine.json()["items"]) == 1
    finally:
        flaky_redis.start()
        server.stop()
