"""PostgreSQL stopped and restarted under a running API: a short outage is waited out,
a longer one answered 503 with Retry-After, never 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amrutam.dev.servers import PostgresServer, RedisServer, free_port
from amrutam.infra.migrate import upgrade
from tests.factories import (
    a_booking_waiting_on_its_slot_row,
    booked_count,
    make_doctor,
    make_slots,
)
from tests.helpers import api_env, assert_problem, bearer, register
from tests.servers import ApiServer

WAIT_S = 6  # AMRUTAM_DB_WAIT_S: well over the restart below, on a slow machine too


@pytest.fixture(scope="module")
def own_postgres(workdir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(workdir / "pg-outage", free_port(), settings={"fsync": "off"})
    server.start()
    server.create_database("outage")
    upgrade(server.url("outage"))
    yield server
    server.stop("immediate")


@pytest.fixture(scope="module")
def outage_api(own_postgres: PostgresServer, redis_server: RedisServer) -> Iterator[ApiServer]:
    env = api_env(own_postgres.url("outage"), redis_server.url(), db_wait_s=str(WAIT_S))
    server = ApiServer(env, workers=1).start()
    yield server
    server.stop()


async def test_database_down_then_restarted(
    outage_api: ApiServer, own_postgres: PostgresServer
) -> None:
    async with httpx.AsyncClient(
        base_url=outage_api.url, headers={"X-Forwarded-For": "10.88.0.1"}, timeout=20
    ) as http:
        doctor = await make_doctor(http)
        slot = (await make_slots(http, doctor))[0]
        patient = await register(http)

        own_postgres.stop("fast")
        try:
            ready = await http.get("/readyz")
            body = assert_problem(ready, 503)
            assert "postgres" in body["detail"]
            assert body["checks"]["redis"] == "ok"
            # Each waits out the deadline, then gives up.
            down = await asyncio.gather(
                http.get("/v1/auth/me", headers=bearer(patient)),
                http.post(
                    "/v1/appointments/book",
                    json={"slot_id": slot["id"]},
                    headers={**bearer(patient), "Idempotency-Key": "while-down"},
                ),
                http.get(f"/v1/doctors/{doctor['id']}/slots"),
            )
            for response in down:
                assert_problem(response, 503)
                assert response.headers["retry-after"]
        finally:
            own_postgres.start()

        # The pool replaces the connections the restart closed before handing them out.
        statuses = [
            (await http.get("/v1/auth/me", headers=bearer(patient))).status_code for _ in range(5)
        ]
        statuses += [
            (await http.get(f"/v1/doctors/{doctor['id']}/slots")).status_code for _ in range(5)
        ]
        assert statuses == [200] * 10, statuses
        booked = await http.post(
            "/v1/appointments/book",
            json={"slot_id": slot["id"]},
            headers={**bearer(patient), "Idempotency-Key": "after-restart"},
        )
        assert booked.status_code == 201, booked.text
        assert (await http.get("/readyz")).status_code == 200
        assert 'status="500"' not in (await http.get("/metrics")).text


def _start_after(server: PostgresServer, seconds: float) -> None:
    time.sleep(seconds)
    server.start()


async def test_requests_wait_through_a_short_restart(
    outage_api: ApiServer, own_postgres: PostgresServer
) -> None:
    async with httpx.AsyncClient(
        base_url=outage_api.url, headers={"X-Forwarded-For": "10.88.0.2"}, timeout=30
    ) as http:
        doctor = await make_doctor(http)
        slot = (await make_slots(http, doctor))[0]
        patient = await register(http)

        await asyncio.to_thread(own_postgres.stop, "fast")
        back = asyncio.create_task(asyncio.to_thread(_start_after, own_postgres, 1.0))
        me, booked, listing = await asyncio.gather(
            http.get("/v1/auth/me", headers=bearer(patient)),
            http.post(
                "/v1/appointments/book",
                json={"slot_id": slot["id"]},
                headers={**bearer(patient), "Idempotency-Key": "through-a-restart"},
            ),
            http.get(f"/v1/doctors/{doctor['id']}/slots"),
        )
        await back
        assert me.status_code == 200, me.text
        assert booked.status_code == 201, booked.text
        assert listing.status_code == 200, listing.text
        metrics = (await http.get("/metrics")).text
        assert 'amrutam_db_outage_waits_total{kind="connected"}' in metrics


async def test_a_booking_cut_off_before_its_commit_is_run_again(
    outage_api: ApiServer, own_postgres: PostgresServer
) -> None:
    async with httpx.AsyncClient(
        base_url=outage_api.url, headers={"X-Forwarded-For": "10.88.0.3"}, timeout=30
    ) as http:
        doctor = await make_doctor(http)
        slot = (await make_slots(http, doctor))[0]
        patient = await register(http)

        # Another transaction holds the slot's row, so the booking is mid-transaction
        # (its BEGIN sent, no COMMIT) when the server restarts and cuts it off.
        database_url = own_postgres.url("outage")
        holder, booking = await a_booking_waiting_on_its_slot_row(
            http, database_url, bearer(patient), slot["id"], "cut-off-mid-transaction"
        )
        await asyncio.to_thread(own_postgres.stop, "fast")
        await asyncio.to_thread(own_postgres.start)
        holder.terminate()

        response = await booking
        assert response.status_code == 201, response.text
        metrics = (await http.get("/metrics")).text
        assert 'amrutam_db_outage_waits_total{kind="repeated"}' in metrics
        assert await booked_count(database_url, slot["id"]) == 1
