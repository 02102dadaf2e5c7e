"""The public slot listing on real parts: it is served from the cache, yet never shows
what stopped being true. Every change to a doctor's slots shows at once, from any path
that makes one, and what changes by time alone shows the moment it happens: a hold
expiring (no task runs) and, for a listing from now, a slot starting."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from amrutam.timeutil import utcnow
from tests.factories import book, make_doctor, make_slots, pg_dsn
from tests.helpers import bearer, random_ip, register
from tests.servers import ApiServer


async def listed(http: httpx.AsyncClient, doctor: dict[str, Any], **params: str) -> list[str]:
    """The ids the public listing shows, in order (asked anonymously)."""
    page = await http.get(f"/v1/doctors/{doctor['id']}/slots", params=params)
    assert page.status_code == 200, page.text
    return [s["id"] for s in page.json()["items"]]


async def block_behind_the_apis_back(database_url: str, slot_id: str) -> None:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        await conn.execute(
            "UPDATE availability_slots SET status = 'blocked' WHERE id = $1", uuid.UUID(slot_id)
        )
    finally:
        await conn.close()


async def until(instant: str | datetime) -> None:
    moment = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
    await asyncio.sleep(max(0.0, (moment - utcnow()).total_seconds()) + 0.05)


async def test_the_listing_is_cached_and_every_change_to_a_slot_shows_at_once(
    client: httpx.AsyncClient, database_url: str
) -> None:
    doctor = await make_doctor(client)
    a, b, c, d = (s["id"] for s in await make_slots(client, doctor, count=4))
    patient = bearer(await register(client))
    assert await listed(client, doctor) == [a, b, c, d]
    # A change the API did not make is not seen: the answer came from the cache.
    await block_behind_the_apis_back(database_url, d)
    assert await listed(client, doctor) == [a, b, c, d]

    held = await client.post(f"/v1/slots/{a}/hold", headers=patient)
    assert held.status_code == 201, held.text
    assert await listed(client, doctor) == [b, c]  # recomputed: d's block shows too
    released = await client.delete(f"/v1/holds/{held.json()['id']}", headers=patient)
    assert released.status_code == 204
    assert await listed(client, doctor) == [a, b, c]

    booking = await book(client, patient, b)
    assert booking.status_code == 201, booking.text
    assert await listed(client, doctor) == [a, c]
    moved = await client.post(
        f"/v1/appointments/{booking.json()['id']}/reschedule",
        json={"slot_id": c},
        headers=patient,
    )
    assert moved.status_code == 200, moved.text
    assert await listed(client, doctor) == [a, b]
    cancelled = await client.post(
        f"/v1/appointments/{booking.json()['id']}/cancel", headers=patient
    )
    assert cancelled.status_code == 200, cancelled.text
    assert await listed(client, doctor) == [a, b, c]

    deleted = await client.delete(f"/v1/doctors/me/slots/{a}", headers=doctor["headers"])
    assert deleted.status_code == 204
    assert await listed(client, doctor) == [b, c]
    (e,) = await make_slots(client, doctor, start=utcnow() + timedelta(days=2))
    assert await listed(client, doctor) == [e["id"], b, c]
    # Pages are cached apart, and each follows the changes.
    assert await listed(client, doctor, limit="1") == [e["id"]]
    await book(client, patient, e["id"])
    assert await listed(client, doctor, limit="1") == [b]


async def test_leaving_the_line_with_an_offer_opens_the_slot_in_the_listing(
    client: httpx.AsyncClient,
) -> None:
    doctor = await make_doctor(client)
    (slot,) = await make_slots(client, doctor)
    booker, waiting = bearer(await register(client)), bearer(await register(client))
    booking = (await book(client, booker, slot["id"])).json()
    day = datetime.fromisoformat(slot["starts_at"]).astimezone(ZoneInfo("Asia/Kolkata")).date()
    joined = await client.post(
        f"/v1/doctors/{doctor['id']}/waitlist", headers=waiting, json={"date": day.isoformat()}
    )
    assert joined.status_code == 201, joined.text
    await client.post(f"/v1/appointments/{booking['id']}/cancel", headers=booker)
    assert await listed(client, doctor) == []  # offered to the one in line: held for them
    assert await listed(client, doctor) == []
    left = await client.delete(f"/v1/waitlist/{joined.json()['id']}", headers=waiting)
    assert left.status_code == 204
    assert await listed(client, doctor) == [slot["id"]]


@pytest.fixture
async def http(short_hold_api: ApiServer) -> Any:
    async with httpx.AsyncClient(
        base_url=short_hold_api.url, headers={"X-Forwarded-For": random_ip()}, timeout=30
    ) as client:
        yield client


async def test_a_slot_shows_again_the_moment_its_hold_expires(http: httpx.AsyncClient) -> None:
    doctor = await make_doctor(http)
    a, b = (s["id"] for s in await make_slots(http, doctor, count=2))
    held = await http.post(f"/v1/slots/{a}/hold", headers=bearer(await register(http)))
    assert held.status_code == 201, held.text
    assert await listed(http, doctor) == [b]
    assert await listed(http, doctor) == [b]
    await until(held.json()["expires_at"])  # no worker and no sweep runs here
    assert await listed(http, doctor) == [a, b]


async def test_a_listing_from_now_drops_a_slot_the_moment_it_starts(
    http: httpx.AsyncClient,
) -> None:
    doctor = await make_doctor(http)
    soon, later = await make_slots(http, doctor, count=2, start=utcnow() + timedelta(seconds=2))
    assert await listed(http, doctor) == [soon["id"], later["id"]]
    assert await listed(http, doctor) == [soon["id"], later["id"]]
    # From a fixed instant the listing does not depend on the time: it keeps the slot.
    since = (utcnow() - timedelta(minutes=1)).isoformat()
    assert await listed(http, doctor, **{"from": since}) == [soon["id"], later["id"]]
    await until(soon["starts_at"])
    assert await listed(http, doctor) == [later["id"]]
    assert await listed(http, doctor, **{"from": since}) == [soon["id"], later["id"]]
