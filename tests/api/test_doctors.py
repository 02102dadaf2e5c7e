"""Profiles, search, availability and cache invalidation through the API."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx

from amrutam.timeutil import utcnow
from tests.factories import book, make_doctor, make_slots
from tests.helpers import assert_problem, bearer, register


async def test_profile_roles_and_validation(client: httpx.AsyncClient) -> None:
    patient = await register(client)
    profile = {
        "specialty": "ENT",
        "languages": ["en"],
        "consultation_fee": 1,
        "experience_years": 1,
        "timezone": "Asia/Kolkata",
    }
    assert_problem(await client.put("/v1/doctors/me/profile", json=profile), 401)
    assert_problem(
        await client.put("/v1/doctors/me/profile", json=profile, headers=bearer(patient)), 403
    )
    doctor = await register(client, "doctor")
    bad = await client.put(
        "/v1/doctors/me/profile",
        json={**profile, "timezone": "Mars/Olympus", "consultation_fee": -5, "currency": "rupees"},
        headers=bearer(doctor),
    )
    fields = {e["field"] for e in assert_problem(bad, 422)["errors"]}
    assert fields == {"timezone", "consultation_fee", "currency"}
    assert_problem(await client.get(f"/v1/doctors/{uuid.uuid4()}"), 404)


async def test_profile_change_is_visible_at_once(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(client, consultation_fee=30000)
    path = f"/v1/doctors/{doctor['id']}"
    assert (await client.get(path)).json()["consultation_fee"] == 30000
    assert (await client.get(path)).json()["consultation_fee"] == 30000  # now cached
    metrics = (await client.get("/metrics")).text
    assert 'amrutam_cache_requests_total{cache="profile",result="hit"}' in metrics
    assert 'amrutam_cache_requests_total{cache="profile",result="miss"}' in metrics
    search = f"/v1/doctors?q={doctor['user']['full_name'].split()[-1]}&specialty=dermatology"
    found = (await client.get(search)).json()["items"]
    assert any(d["id"] == doctor["id"] and d["consultation_fee"] == 30000 for d in found)

    changed = await client.put(
        "/v1/doctors/me/profile",
        json={
            "specialty": "Dermatology",
            "languages": ["English"],
            "consultation_fee": 45000,
            "experience_years": 10,
            "timezone": "Asia/Kolkata",
            "city": "Chennai",
        },
        headers=doctor["headers"],
    )
    assert changed.status_code == 200
    assert (await client.get(path)).json()["consultation_fee"] == 45000
    found = (await client.get(search)).json()["items"]
    assert any(d["id"] == doctor["id"] and d["consultation_fee"] == 45000 for d in found)


async def test_search_filters_sorts_and_pages(client: httpx.AsyncClient) -> None:
    specialty = f"spec{uuid.uuid4().hex[:8]}"
    made = [
        await make_doctor(
            client,
            specialty=specialty,
            consultation_fee=fee,
            experience_years=exp,
            languages=langs,
            city=city,
        )
        for fee, exp, langs, city in [
            (10000, 3, ["English"], "Pune"),
            (20000, 9, ["Hindi", "English"], "Delhi"),
            (30000, 5, ["Hindi"], "Pune"),
            (40000, 20, ["Marathi"], "pune"),
        ]
    ]
    ids = [d["id"] for d in made]

    async def names(query: str) -> list[str]:
        response = await client.get(f"/v1/doctors?specialty={specialty}&{query}")
        assert response.status_code == 200, response.text
        return [d["id"] for d in response.json()["items"]]

    assert await names("sort=fee") == ids
    assert await names("sort=-fee") == ids[::-1]
    assert await names("sort=-experience") == [ids[3], ids[1], ids[2], ids[0]]
    assert await names("sort=fee&language=hindi") == [ids[1], ids[2]]
    assert await names("sort=fee&city=PUNE") == [ids[0], ids[2], ids[3]]
    assert await names("sort=fee&min_fee=15000&max_fee=35000") == [ids[1], ids[2]]

    first = (await client.get(f"/v1/doctors?specialty={specialty}&sort=fee&limit=3")).json()
    assert [d["id"] for d in first["items"]] == ids[:3]
    rest = (
        await client.get(
            f"/v1/doctors?specialty={specialty}&sort=fee&limit=3&cursor={first['next_cursor']}"
        )
    ).json()
    assert [d["id"] for d in rest["items"]] == ids[3:]
    assert rest["next_cursor"] is None

    for bad in (
        "sort=name",
        "min_fee=-1",
        "limit=0",
        "min_fee=5&max_fee=1",
        "cursor=%%%",
        "available_on=tomorrow",
        "unknown=1",
    ):
        assert_problem(await client.get(f"/v1/doctors?{bad}"), 422)


async def test_available_on_follows_bookings_immediately(client: httpx.AsyncClient) -> None:
    specialty = f"avail{uuid.uuid4().hex[:8]}"
    doctor = await make_doctor(client, specialty=specialty, timezone="UTC")
    day = (utcnow() + timedelta(days=6)).date()
    start = utcnow().replace(
        year=day.year, month=day.month, day=day.day, hour=10, minute=0, second=0, microsecond=0
    )
    slot = (await make_slots(client, doctor, start=start))[0]
    query = f"/v1/doctors?specialty={specialty}&available_on={day.isoformat()}"
    other_day = f"/v1/doctors?specialty={specialty}&available_on={(day + timedelta(days=1))}"
    assert [d["id"] for d in (await client.get(query)).json()["items"]] == [doctor["id"]]
    assert (await client.get(other_day)).json()["items"] == []

    patient = await register(client)
    appointment = (await book(client, bearer(patient), slot["id"])).json()
    assert (await client.get(query)).json()["items"] == []  # the only slot is taken
    await client.post(f"/v1/appointments/{appointment['id']}/cancel", headers=bearer(patient))
    assert [d["id"] for d in (await client.get(query)).json()["items"]] == [doctor["id"]]


async def test_overlapping_slots_are_refused_and_nothing_is_created(
    client: httpx.AsyncClient,
) -> None:
    doctor = await make_doctor(client)
    start = (utcnow() + timedelta(days=4)).replace(microsecond=0)
    await make_slots(client, doctor, start=start)
    batch = {
        "slots": [
            {
                "starts_at": (start + timedelta(hours=2)).isoformat(),
                "ends_at": (start + timedelta(hours=3)).isoformat(),
            },
            {
                "starts_at": (start + timedelta(minutes=15)).isoformat(),
                "ends_at": (start + timedelta(minutes=45)).isoformat(),
            },
        ]
    }
    assert_problem(
        await client.post("/v1/doctors/me/slots", json=batch, headers=doctor["headers"]), 409
    )
    inside = {"slots": [batch["slots"][0], batch["slots"][0]]}
    assert_problem(
        await client.post("/v1/doctors/me/slots", json=inside, headers=doctor["headers"]), 409
    )
    listed = (await client.get(f"/v1/doctors/{doctor['id']}/slots")).json()["items"]
    assert len(listed) == 1


async def test_slot_validation(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(client)
    start = utcnow() + timedelta(days=2)
    cases = [
        {"slots": [{"starts_at": start.isoformat(), "ends_at": start.isoformat()}]},
        {"slots": [{"starts_at": "2030-01-01T10:00:00", "ends_at": "2030-01-01T11:00:00"}]},
        {
            "slots": [
                {
                    "starts_at": (utcnow() - timedelta(days=1)).isoformat(),
                    "ends_at": utcnow().isoformat(),
                }
            ]
        },
        {"slots": []},
        {
            "from_date": "2030-01-10",
            "to_date": "2030-01-01",
            "weekdays": [0],
            "start_time": "09:00",
            "end_time": "10:00",
            "slot_minutes": 30,
            "timezone": "UTC",
        },
        {
            "from_date": "2030-01-01",
            "to_date": "2030-01-02",
            "weekdays": [9],
            "start_time": "09:00",
            "end_time": "10:00",
            "slot_minutes": 30,
            "timezone": "UTC",
        },
        {
            "from_date": "2030-01-01",
            "to_date": "2030-12-31",
            "weekdays": [0],
            "start_time": "09:00",
            "end_time": "10:00",
            "slot_minutes": 30,
            "timezone": "UTC",
        },
    ]
    for body in cases:
        response = await client.post("/v1/doctors/me/slots", json=body, headers=doctor["headers"])
        assert_problem(response, 422)
    no_profile = await register(client, "doctor")
    response = await client.post(
        "/v1/doctors/me/slots",
        json={
            "slots": [
                {
                    "starts_at": start.isoformat(),
                    "ends_at": (start + timedelta(minutes=30)).isoformat(),
                }
            ]
        },
        headers=bearer(no_profile),
    )
    assert_problem(response, 409)


async def test_weekly_rule_across_dst_gives_the_right_utc_instants(
    client: httpx.AsyncClient,
) -> None:
    doctor = await make_doctor(client, timezone="America/New_York")
    # US clocks spring forward on Sunday 2030-03-10.
    rule = {
        "from_date": "2030-03-08",
        "to_date": "2030-03-11",
        "weekdays": [4, 0],
        "start_time": "09:00",
        "end_time": "10:00",
        "slot_minutes": 60,
        "timezone": "America/New_York",
    }
    response = await client.post("/v1/doctors/me/slots", json=rule, headers=doctor["headers"])
    assert response.status_code == 201, response.text
    assert [(s["starts_at"], s["ends_at"]) for s in response.json()["items"]] == [
        ("2030-03-08T14:00:00+00:00", "2030-03-08T15:00:00+00:00"),  # Friday, EST (UTC-5)
        ("2030-03-11T13:00:00+00:00", "2030-03-11T14:00:00+00:00"),  # Monday, EDT (UTC-4)
    ]


async def test_deleting_slots(client: httpx.AsyncClient) -> None:
    doctor, other = await make_doctor(client), await make_doctor(client)
    open_slot, taken = await make_slots(client, doctor, count=2)
    patient = await register(client)
    await book(client, bearer(patient), taken["id"])
    base = "/v1/doctors/me/slots/"
    assert_problem(await client.delete(base + open_slot["id"], headers=other["headers"]), 404)
    assert_problem(await client.delete(base + taken["id"], headers=doctor["headers"]), 409)
    assert_problem(await client.delete(base + open_slot["id"], headers=bearer(patient)), 403)
    assert (
        await client.delete(base + open_slot["id"], headers=doctor["headers"])
    ).status_code == 204
    assert_problem(await client.delete(base + open_slot["id"], headers=doctor["headers"]), 404)


async def test_slot_listing_visibility(client: httpx.AsyncClient) -> None:
    doctor = await make_doctor(client)
    open_slot, taken = await make_slots(client, doctor, count=2)
    patient = await register(client)
    await book(client, bearer(patient), taken["id"])
    public = (await client.get(f"/v1/doctors/{doctor['id']}/slots")).json()["items"]
    assert [s["id"] for s in public] == [open_slot["id"]]
    assert_problem(await client.get(f"/v1/doctors/{doctor['id']}/slots?status=booked"), 403)
    assert_problem(
        await client.get(f"/v1/doctors/{doctor['id']}/slots?status=all", headers=bearer(patient)),
        403,
    )
    mine = await client.get(
        f"/v1/doctors/{doctor['id']}/slots?status=booked", headers=doctor["headers"]
    )
    assert [s["id"] for s in mine.json()["items"]] == [taken["id"]]
    assert_problem(await client.get(f"/v1/doctors/{uuid.uuid4()}/slots"), 404)
