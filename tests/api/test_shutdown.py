"""SIGTERM: the API stops taking connections, finishes the requests in flight, exits 0."""

from __future__ import annotations

import asyncio
import signal

import httpx

from amrutam.dev.servers import RedisServer
from tests.factories import a_booking_waiting_on_its_slot_row, make_doctor, make_slots
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

            holder, booking = await a_booking_waiting_on_its_slot_row(
                http, database_url, bearer(patient), slot["id"], "in-flight-at-sigterm"
            )

            api.process.send_signal(signal.SIGTERM)
            while not await _refused(api.url):  # no new connection is taken: not ready
                await asyncio.sleep(0.05)
            assert not booking.done()

            await holder.execute("ROLLBACK")
            await holder.close()
            response = await booking
            assert response.status_code == 201, response.text
        assert await asyncio.to_thread(api.process.wait, 30) == 0
    finally:
        api.stop()
