"""Slot hoarding through holds and the waitlist (G1, G2): holds count toward the booking
caps together with bookings, a slot let go of cannot be held again by the same patient
before a cool-down, and waitlist places are capped; each refusal says which cap.

A server of its own with small caps: 3 upcoming in all, 2 with one doctor, a 60 s
cool-down, 2 waitlists."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from amrutam.dev.servers import RedisServer
from amrutam.timeutil import utcnow
from tests.factories import book, make_doctor, make_slots
from tests.helpers import api_env, assert_problem, bearer, register
from tests.servers import ApiServer


@pytest.fixture(scope="module")
def capped_api(database_url: str, redis_server: RedisServer) -> Iterator[ApiServer]:
    env = api_env(
        database_url,
        redis_server.url(6),
        max_open_bookings="3",
        max_open_bookings_per_doctor="2",
        hold_cooldown_s="60",
        max_waitlist_entries="2",
    )
    server = ApiServer(env, workers=1).start()
    yield server
    server.stop()


@pytest.fixture
async def http(capped_api: ApiServer) -> Any:
    async with httpx.AsyncClient(base_url=capped_api.url, timeout=30) as client:
        yield client


async def _hold(http: httpx.AsyncClient, patient: dict[str, str], slot: dict[str, Any]) -> Any:
    return await http.post(f"/v1/slots/{slot['id']}/hold", headers=patient)


async def test_holds_of_many_doctors_stop_at_the_cap_of_upcoming_appointments(
    http: httpx.AsyncClient,
) -> None:
    """G1: one patient held a slot of each of 12 doctors."""
    patient = bearer(await register(http))
    doctors = [await make_doctor(http) for _ in range(4)]
    start = utcnow().replace(microsecond=0) + timedelta(days=3)
    slots = [(await make_slots(http, d, start=start + timedelta(hours=i)))[0]
             for i, d in enumerate(doctors)]  # fmt: skip
    for slot in slots[:3]:
        assert (await _hold(http, patient, slot)).status_code == 201
    body = assert_problem(await _hold(http, patient, slots[3]), 409)
    assert "at most 3 at a time" in body["detail"]
    # Nor can a booking pass the cap beside the holds.
    assert "at most 3" in assert_problem(await book(http, patient, slots[3]["id"]), 409)["detail"]
    # A held slot becomes its booking without counting twice.
    assert (await book(http, patient, slots[0]["id"])).status_code == 201


async def test_a_hold_cannot_pass_the_cap_with_one_doctor(http: httpx.AsyncClient) -> None:
    """G2: with the doctor's cap of bookings reached, a hold of another of their slots
    blocked it for everyone, and its holder could never book it."""
    patient = bearer(await register(http))
    doctor = await make_doctor(http)
    slots = await make_slots(http, doctor, count=4)
    assert (await book(http, patient, slots[0]["id"])).status_code == 201
    assert (await book(http, patient, slots[1]["id"])).status_code == 201
    body = assert_problem(await _hold(http, patient, slots[2]), 409)
    assert "with this doctor" in body["detail"]
    other = bearer(await register(http))
    assert (await _hold(http, other, slots[2])).status_code == 201  # open to others


async def test_a_released_hold_cannot_be_renewed_at_once(http: httpx.AsyncClient) -> None:
    """G1: release-then-hold kept a slot for ever, ten minutes at a time."""
    patient = bearer(await register(http))
    doctor = await make_doctor(http)
    slot, other_slot = await make_slots(http, doctor, count=2)
    held = await _hold(http, patient, slot)
    assert (await http.delete(f"/v1/holds/{held.json()['id']}", headers=patient)).status_code == 204
    again = await _hold(http, patient, slot)
    assert_problem(again, 429)
    assert 0 < int(again.headers["retry-after"]) <= 60
    # Replacing it by a hold of another slot of the doctor and coming back: the same.
    someone = bearer(await register(http))
    assert (await _hold(http, someone, slot)).status_code == 201
    first = await _hold(http, patient, other_slot)
    assert first.status_code == 201
    released = await http.delete(f"/v1/holds/{first.json()['id']}", headers=patient)
    assert released.status_code == 204
    assert_problem(await _hold(http, patient, other_slot), 429)


async def test_waitlist_places_per_patient_are_capped(http: httpx.AsyncClient) -> None:
    """G1: one patient joined 40 waitlists of one doctor."""
    patient = bearer(await register(http))
    doctor = await make_doctor(http)
    days = [(utcnow() + timedelta(days=d)).date().isoformat() for d in (3, 4, 5)]
    path = f"/v1/doctors/{doctor['id']}/waitlist"
    for day in days[:2]:
        assert (await http.post(path, headers=patient, json={"date": day})).status_code == 201
    body = assert_problem(await http.post(path, headers=patient, json={"date": days[2]}), 409)
    assert "at most 2" in body["detail"]
