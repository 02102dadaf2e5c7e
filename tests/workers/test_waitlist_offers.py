"""The waitlist end to end on the real worker and SMTP server: a cancellation with three
patients waiting offers the slot to the first, then (the first's hold expired) to the
second, with exactly one message each."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from celery import Celery

from tests.factories import book, make_doctor, make_slots, pg_dsn
from tests.helpers import bearer, register
from tests.workers.conftest import Mailbox, Worker, wait_for


async def _statuses(database_url: str, doctor_id: str) -> list[str]:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT status FROM waitlist_entries WHERE doctor_id = $1 ORDER BY created_at",
            uuid.UUID(doctor_id),
        )
    finally:
        await conn.close()
    return [r["status"] for r in rows]


async def test_offers_go_down_the_line_with_one_message_each(
    client: httpx.AsyncClient,
    worker: Worker,
    broker: Celery,
    mailbox: Mailbox,
    database_url: str,
) -> None:
    doctor = await make_doctor(client)
    (slot,) = await make_slots(client, doctor)
    # The date in the doctor's time zone (the test profile's: Asia/Kolkata).
    starts = datetime.fromisoformat(slot["starts_at"]).astimezone(ZoneInfo("Asia/Kolkata"))
    day = starts.date().isoformat()
    booker = await register(client)
    booking = (await book(client, bearer(booker), slot["id"])).json()
    waiting = [await register(client) for _ in range(3)]
    for patient in waiting:
        joined = await client.post(
            f"/v1/doctors/{doctor['id']}/waitlist", headers=bearer(patient), json={"date": day}
        )
        assert joined.status_code == 201, joined.text
    await client.post(f"/v1/appointments/{booking['id']}/cancel", headers=bearer(booker))
    assert await _statuses(database_url, doctor["id"]) == ["offered", "waiting", "waiting"]

    # The first lets the offer lapse (its hold expires), and the beat task passes it on.
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        await conn.execute(
            "UPDATE slot_holds SET expires_at = now() - interval '1 second' "
            "WHERE slot_id = $1 AND ended_at IS NULL",
            uuid.UUID(slot["id"]),
        )
    finally:
        await conn.close()
    broker.send_task("workers.tasks.end_expired_holds", queue="default")
    for _ in range(150):
        if await _statuses(database_url, doctor["id"]) == ["expired", "offered", "waiting"]:
            break
        time.sleep(0.2)
    assert await _statuses(database_url, doctor["id"]) == ["expired", "offered", "waiting"]

    for _ in range(2):  # the relay running twice sends nothing twice
        broker.send_task("workers.tasks.relay_outbox", queue="default")
    first, second, third = (p["user"]["email"] for p in waiting)
    wait_for(lambda: mailbox.to(first) and mailbox.to(second))
    time.sleep(2)
    offers = {
        email: [m for m in mailbox.to(email) if "waited for" in m["Subject"]]
        for email in (first, second, third)
    }
    assert {email: len(found) for email, found in offers.items()} == {first: 1, second: 1, third: 0}
