"""The waitlist on real parts: a slot that opens goes to the first in line as a hold, an
unused offer passes to the next, a window is respected, and booking elsewhere leaves
the line."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from amrutam.scheduling.holds import end_expired
from tests.factories import book, make_doctor, make_slots, pg_dsn
from tests.helpers import SHORT_HOLD_S, assert_problem, bearer, random_ip, register
from tests.servers import ApiServer

KOLKATA = ZoneInfo("Asia/Kolkata")  # the test doctors' time zone


@pytest.fixture
async def http(short_hold_api: ApiServer) -> Any:
    async with httpx.AsyncClient(
        base_url=short_hold_api.url, headers={"X-Forwarded-For": random_ip()}, timeout=30
    ) as client:
        yield client


def nine_am(days_ahead: int) -> tuple[date, datetime]:
    """A day ahead in the doctors' time zone, and 09:00 on it."""
    day = (datetime.now(KOLKATA) + timedelta(days=days_ahead)).date()
    return day, datetime(day.year, day.month, day.day, 9, tzinfo=KOLKATA)


def local_day(slot: dict[str, Any]) -> date:
    return datetime.fromisoformat(slot["starts_at"]).astimezone(KOLKATA).date()


async def join(
    http: httpx.AsyncClient,
    patient: dict[str, str],
    doctor: dict[str, Any],
    day: date,
    **window: str,
) -> httpx.Response:
    return await http.post(
        f"/v1/doctors/{doctor['id']}/waitlist",
        headers=patient,
        json={"date": day.isoformat(), **window},
    )


async def entry_of(http: httpx.AsyncClient, patient: dict[str, str]) -> dict[str, Any]:
    listed = await http.get("/v1/waitlist", headers=patient)
    assert listed.status_code == 200, listed.text
    (entry,) = listed.json()["items"]
    return dict(entry)


async def sweep(database_url: str) -> None:
    """What the beat task does: record expired holds and pass their slots on."""
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        await end_expired(conn, timedelta(seconds=SHORT_HOLD_S))
    finally:
        await conn.close()


async def test_a_cancellation_goes_to_the_first_in_line_then_the_next(
    http: httpx.AsyncClient, database_url: str
) -> None:
    doctor = await make_doctor(http)
    (slot,) = await make_slots(http, doctor)
    first, second, third, booker = [bearer(await register(http)) for _ in range(4)]
    booking = (await book(http, booker, slot["id"])).json()
    for patient in (first, second, third):
        joined = await join(http, patient, doctor, local_day(slot))
        assert joined.status_code == 201, joined.text
        assert joined.json()["status"] == "waiting"

    cancelled = await http.post(f"/v1/appointments/{booking['id']}/cancel", headers=booker)
    assert cancelled.status_code == 200, cancelled.text
    offered = await entry_of(http, first)
    assert offered["status"] == "offered"
    assert [(await entry_of(http, p))["status"] for p in (second, third)] == ["waiting"] * 2
    assert_problem(await book(http, second, slot["id"]), 409)  # held for the first

    await asyncio.sleep(SHORT_HOLD_S + 0.3)  # the first does not take it
    await sweep(database_url)
    assert (await entry_of(http, first))["status"] == "expired"
    passed_on = await entry_of(http, second)
    assert passed_on["status"] == "offered"
    assert (await entry_of(http, third))["status"] == "waiting"

    taken = await http.post(
        "/v1/appointments/book",
        json={"hold_id": passed_on["offer"]["hold_id"]},
        headers={**second, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert taken.status_code == 201, taken.text
    assert (await entry_of(http, second))["status"] == "booked"
    assert (await entry_of(http, third))["status"] == "waiting"


async def test_a_window_is_respected_and_new_slots_go_to_the_line(
    http: httpx.AsyncClient,
) -> None:
    doctor = await make_doctor(http)
    day, nine = nine_am(4)
    mornings, anytime = bearer(await register(http)), bearer(await register(http))
    assert (
        await join(http, mornings, doctor, day, from_time="10:00", to_time="12:00")
    ).status_code == 201
    assert (await join(http, anytime, doctor, day)).status_code == 201

    # 09:00-09:30 fits only the one without a window, though the other came first.
    (early,) = await make_slots(http, doctor, start=nine)
    assert (await entry_of(http, mornings))["status"] == "waiting"
    assert (await entry_of(http, anytime))["status"] == "offered"
    (late,) = await make_slots(http, doctor, start=nine + timedelta(hours=1, minutes=30))
    offer = await entry_of(http, mornings)
    assert offer["status"] == "offered"
    listed = await http.get(
        f"/v1/doctors/{doctor['id']}/slots", params={"status": "all"}, headers=doctor["headers"]
    )
    assert {s["id"]: s["status"] for s in listed.json()["items"]} == {
        early["id"]: "held",
        late["id"]: "held",
    }


async def test_booking_elsewhere_leaves_the_line_and_leaving_passes_an_offer_on(
    http: httpx.AsyncClient,
) -> None:
    doctor = await make_doctor(http)
    day, nine = nine_am(3)
    first_slot, other_slot = await make_slots(http, doctor, count=2, start=nine)
    booker, leaver, next_one, elsewhere = [bearer(await register(http)) for _ in range(4)]
    booking = (await book(http, booker, first_slot["id"])).json()
    await join(http, elsewhere, doctor, day)
    await join(http, leaver, doctor, day)
    await join(http, next_one, doctor, day)
    # Books another slot of the same doctor and day: out of the line.
    assert (await book(http, elsewhere, other_slot["id"])).status_code == 201
    assert (await entry_of(http, elsewhere))["status"] == "booked"

    await http.post(f"/v1/appointments/{booking['id']}/cancel", headers=booker)
    offer = await entry_of(http, leaver)
    assert offer["status"] == "offered"
    left = await http.delete(f"/v1/waitlist/{offer['id']}", headers=leaver)
    assert left.status_code == 204
    assert (await entry_of(http, leaver))["status"] == "cancelled"
    assert (await entry_of(http, next_one))["status"] == "offered"
    assert_problem(await http.delete(f"/v1/waitlist/{offer['id']}", headers=leaver), 404)


async def test_joining_refuses_what_cannot_be(http: httpx.AsyncClient) -> None:
    doctor = await make_doctor(http)
    patient = bearer(await register(http))
    day = (datetime.now(KOLKATA) + timedelta(days=2)).date()
    assert (await join(http, patient, doctor, day)).status_code == 201
    assert_problem(await join(http, patient, doctor, day), 409)
    assert_problem(await join(http, patient, {"id": str(uuid.uuid4())}, day), 404)
    assert_problem(await join(http, doctor["headers"], doctor, day), 403)
    assert_problem(await join(http, patient, doctor, day - timedelta(days=3)), 422)
    bad = await join(
        http, patient, doctor, day + timedelta(days=1), from_time="12:00", to_time="11:00"
    )
    assert_problem(bad, 422)
    assert_problem(await http.get("/v1/waitlist"), 401)


async def test_a_window_with_a_time_offset_is_refused_not_silently_moved(
    http: httpx.AsyncClient,
) -> None:
    """G6: "09:00+05:30" was kept as 09:00 in the doctor's zone, whatever that is."""
    doctor = await make_doctor(http)
    patient = bearer(await register(http))
    day = (datetime.now(KOLKATA) + timedelta(days=2)).date()
    for window in ({"from_time": "09:00+05:30"}, {"to_time": "17:00Z"}):
        assert_problem(await join(http, patient, doctor, day, **window), 422)
    listed = await http.get("/v1/waitlist", headers=patient)
    assert listed.json()["items"] == []


async def test_nobody_is_offered_two_slots_and_no_slot_goes_to_two(
    http: httpx.AsyncClient, database_url: str
) -> None:
    doctor = await make_doctor(http)
    day, nine = nine_am(5)
    first, second, third = [bearer(await register(http)) for _ in range(3)]
    for patient in (first, second, third):
        await join(http, patient, doctor, day)
    # Two slots open at once: the first two in line get one each, the third waits.
    a, b = await make_slots(http, doctor, count=2, start=nine)
    offers = [await entry_of(http, p) for p in (first, second, third)]
    assert [o["status"] for o in offers] == ["offered", "offered", "waiting"]
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        held = await conn.fetch(
            "SELECT slot_id, patient_id FROM slot_holds WHERE slot_id = ANY($1::uuid[]) "
            "AND ended_at IS NULL",
            [uuid.UUID(a["id"]), uuid.UUID(b["id"])],
        )
    finally:
        await conn.close()
    assert len({h["slot_id"] for h in held}) == len({h["patient_id"] for h in held}) == 2


async def test_holding_another_slot_declines_an_offer_and_passes_it_on(
    http: httpx.AsyncClient,
) -> None:
    doctor = await make_doctor(http)
    day, nine = nine_am(6)
    offered_slot, other_slot = await make_slots(http, doctor, count=2, start=nine)
    booker, first, second = [bearer(await register(http)) for _ in range(3)]
    taken = (await book(http, booker, offered_slot["id"])).json()
    await join(http, first, doctor, day)
    await join(http, second, doctor, day)
    await http.post(f"/v1/appointments/{taken['id']}/cancel", headers=booker)
    assert (await entry_of(http, first))["status"] == "offered"
    # The first holds a different slot of the same doctor instead: the offer is declined.
    assert (await http.post(f"/v1/slots/{other_slot['id']}/hold", headers=first)).status_code == 201
    assert (await entry_of(http, first))["status"] == "cancelled"
    passed_on = await entry_of(http, second)
    assert passed_on["status"] == "offered"
    assert passed_on["offer"]["hold_id"]
