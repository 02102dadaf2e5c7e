"""SIGTERM: the API stops taking connections, finishes the requests in flight, exits 0."""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import httpx

from amrutam.dev.servers import RedisServer
from tests.factories import make_doctor, make_slots, pg_dsn
from tests.helpers import api_env, bearer, register
from tests.servers import ApiServer


async def _refused(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as fresh:
            await fresh.get(url + "/livez", timeout=1)
    except httpx.ConnectError:
        return True
    return False


async def test_sigterm_drains_the_requests_in_flight(
    database_url: str, redis_server: RedisServer
) -> None:
    api = ApiServer(api_env(database_url, redis_server.url()), workers=1).start()
    assert api.process is not None
    try:
        async with httpx.AsyncClient(
            base_url=api.url, headers={"X-Forwarded-For": "10.90.0.1"}, timeout=30
        ) as http:
            doctor = await make_doctor(http)
            slot = (await make_slots(http, doctor))[0]
            patient = await register(http)

            # Another transaction holds the slot's row: the booking waits in the database.
            holder = await asyncpg.connect(pg_dsn(database_url))
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute(
                "SELECT 1 FROM availability_slots WHERE id = $1 FOR UPDATE", slot["id"]
            )
            booking = asyncio.create_task(
                http.post(
                    "/v1/appointments/book",
                    json={"slot_id": slot["id"]},
                    headers={**bearer(patient), "Idempotency-Key": "in-flight-at-sigterm"},
                )
            )
            while not await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            ):
                await asyncio.sleep(0.05)

            api.process.send_signal(signal.SIGTERM)
            while not await _refused(api.url):  # no new connection is taken: not ready
                await asyncio.sleep(0.05)
            assert not booking.done()

            await transaction.rollback()
            await holder.close()
            response = await booking
            assert response.status_code == 201, response.text
        assert await asyncio.to_thread(api.process.wait, 30) == 0
    finally:
        api.stop()
