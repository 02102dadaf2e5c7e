"""Holds on real parts: a held slot is nobody else's, the holder books it under any storm,
an expired hold never blocks, and at no moment is a slot held and booked by two patients,
with Redis up or down."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from amrutam.dev.servers import RedisServer, free_port
from amrutam.timeutil import utcnow
from tests.factories import book, make_doctor, make_patients, make_slots, pg_dsn
from tests.helpers import SHORT_HOLD_S, api_env, assert_problem, bearer, random_ip, register
from tests.servers import ApiServer

STORM = 300


async def hold(http: httpx.AsyncClient, patient: dict[str, str], slot_id: str) -> httpx.Response:
    return await http.post(f"/v1/slots/{slot_id}/hold", headers=patient)


async def book_hold(
    http: httpx.AsyncClient, patient: dict[str, str], hold_id: str
) -> httpx.Response:
    return await http.post(
        "/v1/appointments/book",
        json={"hold_id": hold_id},
        headers={**patient, "Idempotency-Key": uuid.uuid4().hex},
    )


async def slot_state(database_url: str, slot_id: str) -> tuple[int, int]:
    """(bookings, holds in force) of a slot, as the database has them."""
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM appointments WHERE slot_id = $1 AND status = 'booked')"
            " AS booked, (SELECT count(*) FROM slot_holds WHERE slot_id = $1 "
            "AND ended_at IS NULL AND expires_at > now()) AS held",
            uuid.UUID(slot_id),
        )
    finally:
        await conn.close()
    return int(row["booked"]), int(row["held"])


async def winners(database_url: str, slot_id: str) -> int:
    """Bookings and holds a slot ever got (holds on the short server expire quickly)."""
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        found: int = await conn.fetchval(
            "SELECT (SELECT count(*) FROM appointments WHERE slot_id = $1) "
            "+ (SELECT count(*) FROM slot_holds WHERE slot_id = $1)",
            uuid.UUID(slot_id),
        )
    finally:
        await conn.close()
    return found


async def fresh_slots(url: str, count: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=url, headers={"X-Forwarded-For": random_ip()}) as http:
        doctor = await make_doctor(http)
        return doctor, await make_slots(http, doctor, count=count)


async def listed(http: httpx.AsyncClient, doctor: dict[str, Any], **params: str) -> dict[str, str]:
    page = await http.get(
        f"/v1/doctors/{doctor['id']}/slots", params=params, headers=doctor["headers"]
    )
    assert page.status_code == 200, page.text
    return {s["id"]: s["status"] for s in page.json()["items"]}


async def test_a_held_slot_is_nobody_elses_until_its_holder_books_it(
    client: httpx.AsyncClient, database_url: str
) -> None:
    doctor, (slot,) = await fresh_slots(str(client.base_url))
    holder, other = bearer(await register(client)), bearer(await register(client))
    taken = await hold(client, holder, slot["id"])
    assert taken.status_code == 201, taken.text
    held = taken.json()
    assert held["slot_id"] == slot["id"]
    left = (datetime.fromisoformat(held["expires_at"]) - utcnow()).total_seconds()
    assert 590 < left <= 600  # the default: ten minutes

    public = await client.get(f"/v1/doctors/{doctor['id']}/slots")
    assert slot["id"] not in {s["id"] for s in public.json()["items"]}  # not bookable
    assert (await listed(client, doctor, status="all"))[slot["id"]] == "held"

    assert_problem(await hold(client, other, slot["id"]), 409)
    assert_problem(await book(client, other, slot["id"]), 409)
    assert_problem(await book_hold(client, other, held["id"]), 404)  # not theirs
    assert_problem(await client.delete(f"/v1/holds/{held['id']}", headers=other), 404)
    deleted = await client.delete(f"/v1/doctors/me/slots/{slot['id']}", headers=doctor["headers"])
    assert_problem(deleted, 409)

    booked = await book_hold(client, holder, held["id"])
    assert booked.status_code == 201, booked.text
    assert booked.json()["slot_id"] == slot["id"]
    assert await slot_state(database_url, slot["id"]) == (1, 0)
    assert (await listed(client, doctor, status="all"))[slot["id"]] == "booked"


async def test_releasing_or_replacing_a_hold_opens_its_slot(
    client: httpx.AsyncClient, database_url: str
) -> None:
    doctor, (first, second) = await fresh_slots(str(client.base_url), count=2)
    patient = bearer(await register(client))
    one = (await hold(client, patient, first["id"])).json()
    two = await hold(client, patient, second["id"])  # the same doctor: replaces the first
    assert two.status_code == 201, two.text
    assert await slot_state(database_url, first["id"]) == (0, 0)
    assert_problem(await book_hold(client, patient, one["id"]), 409)  # ended
    released = await client.delete(f"/v1/holds/{two.json()['id']}", headers=patient)
    assert released.status_code == 204
    assert_problem(await client.delete(f"/v1/holds/{two.json()['id']}", headers=patient), 404)
    open_now = await listed(client, doctor)
    assert {first["id"], second["id"]} <= set(open_now)

    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT action, detail->>'reason' AS reason FROM audit_logs "
            "WHERE entity_id = ANY($1::text[]) ORDER BY occurred_at",
            [first["id"], second["id"]],
        )
        events = await conn.fetch(
            "SELECT payload->>'reason' AS reason FROM outbox WHERE event_type = 'slot.released' "
            "AND aggregate_id = ANY($1::uuid[])",
            [uuid.UUID(first["id"]), uuid.UUID(second["id"])],
        )
    finally:
        await conn.close()
    assert [(r["action"], r["reason"]) for r in rows][-4:] == [
        ("slot.held", None),
        ("slot.released", "replaced"),
        ("slot.held", None),
        ("slot.released", "released"),
    ]
    assert sorted(e["reason"] for e in events) == ["released", "replaced"]


async def test_only_patients_hold_and_only_open_future_slots(client: httpx.AsyncClient) -> None:
    doctor, (slot,) = await fresh_slots(str(client.base_url))
    assert_problem(await hold(client, doctor["headers"], slot["id"]), 403)
    patient = bearer(await register(client))
    assert_problem(await hold(client, patient, str(uuid.uuid4())), 404)
    assert_problem(await client.post(f"/v1/slots/{slot['id']}/hold"), 401)
    assert (await book(client, patient, slot["id"])).status_code == 201
    assert_problem(await hold(client, bearer(await register(client)), slot["id"]), 409)
    both = await client.post(
        "/v1/appointments/book",
        json={"slot_id": slot["id"], "hold_id": str(uuid.uuid4())},
        headers={**patient, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert_problem(both, 422)


async def _storm(url: str, slot_id: str, patients: list[dict[str, str]]) -> Counter[str]:
    """Half the patients hold the slot, half book it, all at once."""
    limits = httpx.Limits(max_connections=len(patients))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def attempt(i: int, patient: dict[str, str]) -> str:
            answer = await (hold if i % 2 else book)(http, patient, slot_id)
            return f"{'hold' if i % 2 else 'book'} {answer.status_code}"

        outcomes = await asyncio.gather(*(attempt(i, p) for i, p in enumerate(patients)))
    return Counter(outcomes)


def _one_winner(outcomes: Counter[str]) -> None:
    winners = outcomes["hold 201"] + outcomes["book 201"]
    assert winners == 1, outcomes
    assert {o.split()[1] for o in outcomes} <= {"201", "409", "429"}, outcomes


async def test_a_storm_of_holds_and_bookings_ends_with_one_holder_or_one_booking(
    api: ApiServer, database_url: str
) -> None:
    _, (slot,) = await fresh_slots(api.url)
    outcomes = await _storm(api.url, slot["id"], await make_patients(database_url, STORM))
    _one_winner(outcomes)
    assert sum(await slot_state(database_url, slot["id"])) == 1
    assert await winners(database_url, slot["id"]) == 1


async def test_the_holder_books_under_a_storm_of_others(api: ApiServer, database_url: str) -> None:
    _, (slot,) = await fresh_slots(api.url)
    holder, *others = await make_patients(database_url, STORM + 1)
    async with httpx.AsyncClient(
        base_url=api.url, timeout=60, limits=httpx.Limits(max_connections=STORM + 1)
    ) as http:
        held = (await hold(http, holder, slot["id"])).json()
        storm = [book(http, p, slot["id"]) for p in others]
        mine = book_hold(http, holder, held["id"])
        *answers, booked = await asyncio.gather(*storm, mine)
    assert booked.status_code == 201, booked.text  # no retry needed
    assert {a.status_code for a in answers} <= {409, 429}
    assert await slot_state(database_url, slot["id"]) == (1, 0)


# --- expiry (a server whose holds last two seconds) -------------------------------------


async def test_an_expired_hold_never_blocks_without_any_task(
    short_hold_api: ApiServer, database_url: str
) -> None:
    doctor, (slot,) = await fresh_slots(short_hold_api.url)
    holder, other = await make_patients(database_url, 2)
    async with httpx.AsyncClient(base_url=short_hold_api.url, timeout=30) as http:
        held = (await hold(http, holder, slot["id"])).json()
        assert_problem(await book(http, other, slot["id"]), 409)
        await asyncio.sleep(SHORT_HOLD_S + 0.2)  # nothing runs: no worker, no sweep
        assert (await listed(http, doctor, status="all"))[slot["id"]] == "open"
        assert_problem(await book_hold(http, holder, held["id"]), 409)  # expired
        assert (await book(http, other, slot["id"])).status_code == 201
    assert await slot_state(database_url, slot["id"]) == (1, 0)


async def test_a_hold_expiring_during_a_storm_gives_the_slot_to_one_booking_after_it(
    short_hold_api: ApiServer, database_url: str
) -> None:
    _, (slot,) = await fresh_slots(short_hold_api.url)
    holder, *others = await make_patients(database_url, 101)
    async with httpx.AsyncClient(
        base_url=short_hold_api.url, timeout=60, limits=httpx.Limits(max_connections=100)
    ) as http:
        held = (await hold(http, holder, slot["id"])).json()
        expires = datetime.fromisoformat(held["expires_at"])

        async def keep_trying(patient: dict[str, str]) -> int:
            for _ in range(50):  # 5 s of attempts, across the expiry
                answer = await book(http, patient, slot["id"])
                if answer.status_code == 201 or "not open" in answer.text:
                    return answer.status_code
                await asyncio.sleep(0.1)
            return answer.status_code

        statuses = Counter(await asyncio.gather(*(keep_trying(p) for p in others)))
    assert statuses[201] == 1, statuses
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        booked_at = await conn.fetchval(
            "SELECT created_at FROM appointments WHERE slot_id = $1", uuid.UUID(slot["id"])
        )
    finally:
        await conn.close()
    assert booked_at >= expires  # nobody got it while the hold was in force


# --- without Redis -------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis-holds", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def outage_api(database_url: str, own_redis: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(api_env(database_url, own_redis.url())).start()
    yield server
    server.stop()


async def test_redis_down_changes_nothing_about_holds(
    outage_api: ApiServer, own_redis: RedisServer, database_url: str
) -> None:
    _, (first, second) = await fresh_slots(outage_api.url, count=2)
    patients = await make_patients(database_url, STORM + 1)
    own_redis.stop()
    try:
        outcomes = await _storm(outage_api.url, first["id"], patients[:STORM])
        _one_winner(outcomes)
        assert outcomes["hold 429"] + outcomes["book 429"] == 0  # no lock to shed with
        assert await winners(database_url, first["id"]) == 1
        async with httpx.AsyncClient(base_url=outage_api.url, timeout=60) as http:
            held = (await hold(http, patients[-1], second["id"])).json()
            storm = [book(http, p, second["id"]) for p in patients[:50]]
            *answers, booked = await asyncio.gather(
                *storm, book_hold(http, patients[-1], held["id"])
            )
        assert booked.status_code == 201, booked.text
        assert {a.status_code for a in answers} == {409}
    finally:
        own_redis.start()


async def test_the_database_refuses_a_booking_of_a_slot_held_by_another(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """The third layer alone: straight SQL, no API checks in the way."""
    doctor, (slot,) = await fresh_slots(str(client.base_url))
    holder, other = await register(client), await register(client)
    held = (await hold(client, bearer(holder), slot["id"])).json()
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        start = datetime.fromisoformat(slot["starts_at"])
        end = datetime.fromisoformat(slot["ends_at"])
        insert = (
            "INSERT INTO appointments (id, slot_id, doctor_id, patient_id, starts_at, ends_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)"
        )
        args = (uuid.UUID(slot["id"]), uuid.UUID(doctor["id"]))
        with pytest.raises(asyncpg.ExclusionViolationError, match="held by another"):
            await conn.execute(
                insert, uuid.uuid4(), *args, uuid.UUID(other["user"]["id"]), start, end
            )
        await conn.execute(insert, uuid.uuid4(), *args, uuid.UUID(holder["user"]["id"]), start, end)
        await conn.execute("UPDATE availability_slots SET status = 'booked' WHERE id = $1", args[0])
        await conn.execute(
            "UPDATE slot_holds SET ended_at = now(), ended_as = 'booked' WHERE id = $1",
            uuid.UUID(held["id"]),
        )
        with pytest.raises(asyncpg.ExclusionViolationError, match="not open"):
            await conn.execute(
                "INSERT INTO slot_holds (id, slot_id, doctor_id, patient_id, expires_at) "
                "VALUES ($1, $2, $3, $4, now() + interval '1 minute')",
                uuid.uuid4(),
                *args,
                uuid.UUID(other["user"]["id"]),
            )
    finally:
        await conn.close()


async def test_redis_down_changes_nothing_about_the_waitlist(
    outage_api: ApiServer, own_redis: RedisServer, database_url: str
) -> None:
    doctor, (slot,) = await fresh_slots(outage_api.url)
    booker, first, second = await make_patients(database_url, 3)
    day = datetime.fromisoformat(slot["starts_at"]).astimezone(ZoneInfo("Asia/Kolkata")).date()
    async with httpx.AsyncClient(base_url=outage_api.url, timeout=30) as http:
        booking = (await book(http, booker, slot["id"])).json()
        own_redis.stop()
        try:
            for patient in (first, second):
                joined = await http.post(
                    f"/v1/doctors/{doctor['id']}/waitlist",
                    headers=patient,
                    json={"date": day.isoformat()},
                )
                assert joined.status_code == 201, joined.text
            cancelled = await http.post(f"/v1/appointments/{booking['id']}/cancel", headers=booker)
            assert cancelled.status_code == 200, cancelled.text
            mine = (await http.get("/v1/waitlist", headers=first)).json()["items"][0]
            assert mine["status"] == "offered"
            assert_problem(await book(http, second, slot["id"]), 409)
            taken = await book_hold(http, first, mine["offer"]["hold_id"])
            assert taken.status_code == 201, taken.text
        finally:
            own_redis.start()
    assert await slot_state(database_url, slot["id"]) == (1, 0)
