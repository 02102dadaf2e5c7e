"""PostgreSQL stopped and restarted under a running API: 503s while down, never 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amrutam.dev.servers import PostgresServer, RedisServer, free_port
from amrutam.infra.migrate import upgrade
from tests.factories import make_doctor, make_slots
from tests.helpers import api_env, assert_problem, bearer, register
from tests.servers import ApiServer


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
    server = ApiServer(api_env(own_postgres.url("outage"), redis_server.url()), workers=1).start()
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
            down = [
                await http.get("/v1/auth/me", headers=bearer(patient)),
                await http.post(
                    "/v1/appointments/book",
                    json={"slot_id": slot["id"]},
                    headers={**bearer(patient), "Idempotency-Key": "while-down"},
                ),
                await http.get(f"/v1/doctors/{doctor['id']}/slots"),
            ]
            for response in down:
                assert_problem(response, 503)
                assert response.headers["retry-after"]
        finally:
            own_postgres.start()

        # The pool discards its dead connections on first use: at most one more 503.
        statuses = [
            (await http.get("/v1/auth/me", headers=bearer(patient))).status_code for _ in range(5)
        ]
        assert statuses.count(503) <= 1, statuses
        assert statuses[-1] == 200
        listing = [
            (await http.get(f"/v1/doctors/{doctor['id']}/slots")).status_code for _ in range(5)
        ]
        assert listing.count(503) <= 1, listing
        assert listing[-1] == 200
        booked = await http.post(
            "/v1/appointments/book",
            json={"slot_id": slot["id"]},
            headers={**bearer(patient), "Idempotency-Key": "after-restart"},
        )
        assert booked.status_code in (201, 503), booked.text
        if booked.status_code == 503:
            booked = await http.post(
                "/v1/appointments/book",
                json={"slot_id": slot["id"]},
                headers={**bearer(patient), "Idempotency-Key": "after-restart"},
            )
        assert booked.status_code == 201, booked.text
        assert (await http.get("/readyz")).status_code == 200
        assert 'status="500"' not in (await http.get("/metrics")).text
