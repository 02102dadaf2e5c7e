"""Booking, cancelling, rescheduling and who may see what."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import timedelta
from urllib.parse import urlparse

import asyncpg
import httpx
import orjson

from amrutam.timeutil import utcnow
from tests.factories import book, booked_count, make_doctor, make_patients, make_slots, pg_dsn
from tests.helpers import assert_problem, bearer, register


async def test_book_returns_the_appointment(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(client)
    slot = (await make_slots(client, doctor))[0]
    patient = await register(client)
    response = await client.post(
        "/v1/appointments/book",
        json={"slot_id": slot["id"], "reason": "rash"},
        headers={**bearer(patient), "Idempotency-Key": "first"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "booked"
    assert body["slot_id"] == slot["id"]
    assert body["patient_id"] == patient["user"]["id"]
    assert body["doctor_id"] == doctor["id"]
    assert body["starts_at"] == slot["starts_at"]
    assert response.headers["location"] == f"/v1/appointments/{body['id']}"
    owner_view = await client.get(
        f"/v1/doctors/{doctor['id']}/slots?status=all", headers=doctor["headers"]
    )
    assert [s["status"] for s in owner_view.json()["items"]] == ["booked"]


async def test_booking_needs_a_key_a_patient_and_a_real_open_future_slot(
    client: httpx.AsyncClient, database_url: str
) -> None:
    doctor = await make_doctor(client)
    slot = (await make_slots(client, doctor))[0]
    patient = await register(client)
    no_key = await client.post(
        "/v1/appointments/book", json={"slot_id": slot["id"]}, headers=bearer(patient)
    )
    assert_problem(no_key, 400)
    assert_problem(await book(client, {}, slot["id"]), 401)
    assert_problem(await book(client, doctor["headers"], slot["id"]), 403)
    assert_problem(await book(client, bearer(patient), str(uuid.uuid4())), 404)
    assert_problem(
        await client.post(
            "/v1/appointments/book",
            json={"slot_id": "nope"},
            headers={**bearer(patient), "Idempotency-Key": "x1"},
        ),
        422,
    )
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        past = uuid.uuid4()
        await conn.execute(
            "INSERT INTO availability_slots (id, doctor_id, starts_at, ends_at) "
            "VALUES ($1, $2, now() - interval '2 hours', now() - interval '90 minutes')",
            past,
            uuid.UUID(doctor["id"]),
        )
    finally:
        await conn.close()
    assert_problem(await book(client, bearer(patient), str(past)), 409)


async def test_a_patient_cannot_hold_two_overlapping_appointments(
    client: httpx.AsyncClient,
) -> None:
    start = (utcnow() + timedelta(days=5)).replace(microsecond=0)
    first, second = await make_doctor(client), await make_doctor(client)
    slot_a = (await make_slots(client, first, start=start))[0]
    slot_b = (await make_slots(client, second, start=start + timedelta(minutes=10)))[0]
    patient = await register(client)
    assert (await book(client, bearer(patient), slot_a["id"])).status_code == 201
    clash = await book(client, bearer(patient), slot_b["id"])
    assert "already have an appointment" in assert_problem(clash, 409)["detail"]


async def test_cancel_reopens_then_rebook_and_cancel_twice_is_409(
    client: httpx.AsyncClient,
) -> None:
    doctor = await make_doctor(client)
    slot = (await make_slots(client, doctor))[0]
    alice, bob = await register(client), await register(client)
    booked = (await book(client, bearer(alice), slot["id"])).json()
    cancelled = await client.post(f"/v1/appointments/{booked['id']}/cancel", headers=bearer(alice))
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert_problem(
        await client.post(f"/v1/appointments/{booked['id']}/cancel", headers=bearer(alice)), 409
    )
    rebooked = await book(client, bearer(bob), slot["id"])
    assert rebooked.status_code == 201
    # The doctor may cancel too.
    by_doctor = await client.post(
        f"/v1/appointments/{rebooked.json()['id']}/cancel", headers=doctor["headers"]
    )
    assert by_doctor.status_code == 200


async def test_other_patients_get_404(client: httpx.AsyncClient) -> None:
    doctor, other_doctor = await make_doctor(client), await make_doctor(client)
    slot = (await make_slots(client, doctor))[0]
    owner, stranger = await register(client), await register(client)
    appointment = (await book(client, bearer(owner), slot["id"])).json()
    path = f"/v1/appointments/{appointment['id']}"
    assert_problem(await client.get(path, headers=bearer(stranger)), 404)
    assert_problem(await client.post(path + "/cancel", headers=bearer(stranger)), 404)
    assert_problem(await client.get(path, headers=other_doctor["headers"]), 404)
    assert (await client.get(path, headers=bearer(owner))).status_code == 200
    assert (await client.get(path, headers=doctor["headers"])).status_code == 200
    listed = await client.get("/v1/appointments", headers=bearer(stranger))
    assert listed.json() == {"items": [], "next_cursor": None}


async def test_listings_for_patient_and_doctor_with_filters_and_cursor(
    client: httpx.AsyncClient,
) -> None:
    doctor = await make_doctor(client)
    slots = await make_slots(client, doctor, count=5)
    patient = await register(client)
    ids = [(await book(client, bearer(patient), s["id"])).json()["id"] for s in slots]
    await client.post(f"/v1/appointments/{ids[0]}/cancel", headers=bearer(patient))

    page1 = (await client.get("/v1/appointments?limit=2", headers=bearer(patient))).json()
    page2 = (
        await client.get(
            f"/v1/appointments?limit=2&cursor={page1['next_cursor']}", headers=bearer(patient)
        )
    ).json()
    page3 = (
        await client.get(
            f"/v1/appointments?limit=2&cursor={page2['next_cursor']}", headers=bearer(patient)
        )
    ).json()
    assert [a["id"] for a in page1["items"] + page2["items"] + page3["items"]] == ids
    assert page3["next_cursor"] is None

    booked = (await client.get("/v1/appointments?status=booked", headers=doctor["headers"])).json()
    assert [a["id"] for a in booked["items"]] == ids[1:]
    window = (
        await client.get(
            "/v1/appointments",
            params={"from": slots[2]["starts_at"], "to": slots[4]["starts_at"]},
            headers=doctor["headers"],
        )
    ).json()
    assert [a["id"] for a in window["items"]] == ids[2:4]
    assert_problem(
        await client.get("/v1/appointments?cursor=garbage", headers=bearer(patient)), 422
    )
    assert_problem(await client.get("/v1/appointments?limit=1000", headers=bearer(patient)), 422)


async def test_two_patients_rescheduling_into_one_slot(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(client)
    slot_a, slot_b, target = await make_slots(client, doctor, count=3)
    alice, bob = await register(client), await register(client)
    appt_a = (await book(client, bearer(alice), slot_a["id"])).json()
    appt_b = (await book(client, bearer(bob), slot_b["id"])).json()

    results = await asyncio.gather(
        client.post(
            f"/v1/appointments/{appt_a['id']}/reschedule",
            json={"slot_id": target["id"]},
            headers=bearer(alice),
        ),
        client.post(
            f"/v1/appointments/{appt_b['id']}/reschedule",
            json={"slot_id": target["id"]},
            headers=bearer(bob),
        ),
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses[0] == 200
    assert statuses[1] in (409, 429)
    winner = next(r for r in results if r.status_code == 200).json()
    loser_id = appt_b["id"] if winner["id"] == appt_a["id"] else appt_a["id"]
    loser_slot = slot_b if loser_id == appt_b["id"] else slot_a
    winner_old_slot = slot_a if winner["id"] == appt_a["id"] else slot_b

    loser_token = bearer(bob) if loser_id == appt_b["id"] else bearer(alice)
    loser_now = (await client.get(f"/v1/appointments/{loser_id}", headers=loser_token)).json()
    assert loser_now["status"] == "booked"
    assert loser_now["slot_id"] == loser_slot["id"]
    assert winner["slot_id"] == target["id"]

    view = (
        await client.get(f"/v1/doctors/{doctor['id']}/slots?status=all", headers=doctor["headers"])
    ).json()
    status_of = {s["id"]: s["status"] for s in view["items"]}
    assert status_of[target["id"]] == "booked"
    assert status_of[loser_slot["id"]] == "booked"
    assert status_of[winner_old_slot["id"]] == "open"


async def test_reschedule_rules(client: httpx.AsyncClient) -> None:
    doctor, other = await make_doctor(client), await make_doctor(client)
    slot, free = await make_slots(client, doctor, count=2)
    elsewhere = (await make_slots(client, other))[0]
    patient = await register(client)
    appt = (await book(client, bearer(patient), slot["id"])).json()
    path = f"/v1/appointments/{appt['id']}/reschedule"
    assert_problem(
        await client.post(path, json={"slot_id": elsewhere["id"]}, headers=bearer(patient)), 422
    )
    assert_problem(
        await client.post(path, json={"slot_id": slot["id"]}, headers=bearer(patient)), 409
    )
    assert_problem(
        await client.post(path, json={"slot_id": free["id"]}, headers=doctor["headers"]), 403
    )
    moved = await client.post(path, json={"slot_id": free["id"]}, headers=bearer(patient))
    assert moved.status_code == 200
    assert moved.json()["starts_at"] == free["starts_at"]


def _send_and_drop(url: str, path: str, headers: dict[str, str], body: bytes) -> None:
    """Write a whole request, then close the socket without reading the answer."""
    parsed = urlparse(url)
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {parsed.netloc}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((parsed.hostname, parsed.port)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


async def test_retry_after_a_dropped_connection_books_once(
    client: httpx.AsyncClient, database_url: str, api_url: str
) -> None:
    doctor = await make_doctor(client)
    slot = (await make_slots(client, doctor))[0]
    headers = (await make_patients(database_url, 1))[0]
    key = f"drop-{uuid.uuid4()}"
    body = orjson.dumps({"slot_id": slot["id"]})
    await asyncio.to_thread(
        _send_and_drop,
        api_url,
        "/v1/appointments/book",
        {**headers, "Idempotency-Key": key, "X-Forwarded-For": "10.20.30.40"},
        body,
    )
    retry = None
    for _ in range(50):  # the first attempt may still be running: 409 until it finishes
        retry = await client.post(
            "/v1/appointments/book",
            content=body,
            headers={**headers, "Idempotency-Key": key, "content-type": "application/json"},
        )
        if retry.status_code != 409:
            break
        await asyncio.sleep(0.1)
    assert retry is not None
    assert retry.status_code == 201, retry.text
    assert await booked_count(database_url, slot["id"]) == 1
