"""Real worker, real Redis broker, real SMTP server: side effects happen exactly once."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
from celery import Celery
from redis.asyncio import Redis

from amrutam.infra.queues import queue_depth
from amrutam.timeutil import utcnow
from tests.factories import book, make_doctor, make_slots, pg_dsn
from tests.helpers import bearer, register
from tests.servers import ROOT
from tests.workers.conftest import Mailbox, Worker, wait_for


def _relay(broker: Celery) -> None:
    broker.send_task("workers.tasks.relay_outbox", queue="default")


async def _fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def _query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """A blocking query (for polling helpers), on its own loop in another thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _fetch(database_url, sql, *args)).result()


async def _booked_patient(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    doctor = await make_doctor(client)
    slot = (await make_slots(client, doctor))[0]
    patient = await register(client)
    appointment = (await book(client, bearer(patient), slot["id"])).json()
    return patient, appointment


async def test_a_committed_booking_sends_one_confirmation_a_refused_one_none(
    client: httpx.AsyncClient,
    worker: Worker,
    broker: Celery,
    mailbox: Mailbox,
    database_url: str,
) -> None:
    patient, appointment = await _booked_patient(client)
    email = patient["user"]["email"]
    outbox_before = len(_query(database_url, "SELECT 1 FROM outbox"))
    # The same slot again: refused, rolled back, so no event and no message.
    other = await register(client)
    refused = await book(client, bearer(other), appointment["slot_id"])
    assert refused.status_code == 409
    assert len(_query(database_url, "SELECT 1 FROM outbox")) == outbox_before

    _relay(broker)
    wait_for(lambda: mailbox.to(email))
    # Publishing the event again (a relay crash after publishing) changes nothing.
    event = _query(
        database_url,
        "SELECT id, payload::text AS payload FROM outbox WHERE aggregate_id = $1",
        uuid.UUID(appointment["id"]),
    )[0]
    broker.send_task(
        "workers.tasks.handle_event",
        args=[
            {
                "id": str(event["id"]),
                "type": "appointment.booked",
                "aggregate_id": appointment["id"],
                "payload": json.loads(event["payload"]),
            }
        ],
        queue="default",
    )
    _relay(broker)
    wait_for(lambda: not _query(database_url, "SELECT 1 FROM outbox WHERE published_at IS NULL"))
    time.sleep(2)
    confirmations = [m for m in mailbox.to(email) if "confirmed" in m["Subject"]]
    assert len(confirmations) == 1
    assert mailbox.to(other["user"]["email"]) == []


async def test_worker_killed_mid_task_runs_it_again_and_sends_once(
    client: httpx.AsyncClient,
    worker: Worker,
    worker_settings: dict[str, str],
    broker: Celery,
    mailbox: Mailbox,
    database_url: str,
) -> None:
    worker.stop()
    patient, _ = await _booked_patient(client)
    email = patient["user"]["email"]
    mailbox.stalled[email] = 6.0  # the SMTP conversation hangs: the task is mid-flight
    victim = Worker(worker_settings).start()
    _relay(broker)
    wait_for(
        lambda: (
            mailbox.attempts_to(email)
            and _query(
                database_url,
                "SELECT 1 FROM notifications n JOIN users u ON u.id = n.recipient_id "
                "WHERE u.email = $1 AND n.attempts > 0",
                email,
            )
        )
    )
    victim.kill()
    mailbox.stalled.clear()
    assert mailbox.to(email) == []
    # Redis redelivers an unacknowledged task once its visibility timeout has passed, when
    # a worker next looks: at its start, then only every 100 s (kombu's restore cycle).
    # The replacement comes up after that timeout, as a restarted pod would.
    time.sleep(int(worker_settings["AMRUTAM_BROKER_VISIBILITY_TIMEOUT_S"]) + 1)
    survivor = Worker(worker_settings).start()
    try:
        wait_for(lambda: mailbox.to(email), timeout=150)
        rows = _query(
            database_url,
            "SELECT n.status, n.attempts FROM notifications n "
            "JOIN users u ON u.id = n.recipient_id "
            "WHERE u.email = $1",
            email,
        )
        assert [r["status"] for r in rows] == ["sent"]
        assert rows[0]["attempts"] >= 2
        assert len(mailbox.to(email)) == 1
    finally:
        survivor.stop()
        worker.start()


async def test_refusing_smtp_retries_then_dead_letters_then_retry_delivers(
    client: httpx.AsyncClient,
    worker: Worker,
    worker_settings: dict[str, str],
    broker: Celery,
    mailbox: Mailbox,
    database_url: str,
) -> None:
    patient, _ = await _booked_patient(client)
    email = patient["user"]["email"]
    mailbox.refuse = True
    _relay(broker)
    dead = wait_for(
        lambda: _query(
            database_url,
            "SELECT d.id FROM dead_letters d JOIN notifications n ON n.id::text = d.args->>0 "
            "JOIN users u ON u.id = n.recipient_id WHERE u.email = $1 AND d.requeued_at IS NULL",
            email,
        ),
        timeout=90,
    )
    times = mailbox.attempts_to(email)
    assert len(times) >= 4  # the first try and three retries
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == sorted(gaps)  # exponential backoff: 2, 4, 8 s (jitter off here)
    assert gaps[-1] > 2 * gaps[0] - 1
    status = _query(
        database_url,
        "SELECT n.status, n.last_error FROM notifications n "
        "JOIN users u ON u.id = n.recipient_id WHERE u.email = $1",
        email,
    )
    assert status[0]["status"] == "failed"
    assert "550" in status[0]["last_error"]
    assert mailbox.to(email) == []

    listing = subprocess.run(
        [sys.executable, "-m", "amrutam.cli", "tasks", "dead"],
        env=worker_settings,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert str(dead[0]["id"]) in listing.stdout

    mailbox.refuse = False
    retried = subprocess.run(
        [sys.executable, "-m", "amrutam.cli", "tasks", "retry", str(dead[0]["id"])],
        env=worker_settings,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert retried.returncode == 0, retried.stderr
    wait_for(lambda: mailbox.to(email))
    assert len(mailbox.to(email)) == 1


async def test_reminders_once_per_window_and_no_shows(
    client: httpx.AsyncClient,
    worker: Worker,
    worker_settings: dict[str, str],
    broker: Celery,
    mailbox: Mailbox,
    database_url: str,
) -> None:
    doctor = await make_doctor(client)
    soon = (utcnow() + timedelta(minutes=40)).replace(microsecond=0)
    tomorrow = (utcnow() + timedelta(hours=20)).replace(microsecond=0)
    slot_soon = (await make_slots(client, doctor, start=soon))[0]
    slot_tomorrow = (await make_slots(client, doctor, start=tomorrow))[0]
    patient = await register(client)
    first = (await book(client, bearer(patient), slot_soon["id"])).json()
    second = (await book(client, bearer(patient), slot_tomorrow["id"])).json()

    for _ in range(3):  # beat firing again, or restarted: still one reminder per window
        broker.send_task("workers.tasks.schedule_reminders", queue="default")
    worker.stop()
    worker.start()
    broker.send_task("workers.tasks.schedule_reminders", queue="default")
    email = patient["user"]["email"]
    wait_for(lambda: len([m for m in mailbox.to(email) if "Reminder" in m["Subject"]]) >= 2)
    time.sleep(2)
    kinds = _query(
        database_url,
        "SELECT kind, appointment_id FROM notifications "
        "WHERE kind LIKE 'reminder%' AND appointment_id = ANY($1::uuid[])",
        [uuid.UUID(first["id"]), uuid.UUID(second["id"])],
    )
    assert sorted((r["kind"], str(r["appointment_id"])) for r in kinds) == sorted(
        [("reminder_1h", first["id"]), ("reminder_24h", second["id"])]
    )
    assert len([m for m in mailbox.to(email) if "Reminder" in m["Subject"]]) == 2

    # An appointment that ended without a consultation becomes a no-show.
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        slot_id, appt_id = uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO availability_slots (id, doctor_id, starts_at, ends_at, status) "
            "VALUES ($1, $2, now() - interval '3 hours', now() - interval '150 minutes', 'booked')",
            slot_id,
            uuid.UUID(doctor["id"]),
        )
        await conn.execute(
            "INSERT INTO appointments (id, slot_id, doctor_id, patient_id, starts_at, ends_at) "
            "SELECT $1, id, doctor_id, $3, starts_at, ends_at FROM availability_slots "
            "WHERE id = $2",
            appt_id,
            slot_id,
            uuid.UUID(patient["user"]["id"]),
        )
    finally:
        await conn.close()
    broker.send_task("workers.tasks.mark_no_shows", queue="maintenance")
    wait_for(
        lambda: _query(
            database_url, "SELECT 1 FROM appointments WHERE id = $1 AND status = 'no_show'", appt_id
        )
    )
    still = _query(
        database_url, "SELECT status FROM appointments WHERE id = $1", uuid.UUID(first["id"])
    )
    assert still[0]["status"] == "booked"


def test_worker_metrics_and_health(worker: Worker, worker_settings: dict[str, str]) -> None:
    port = worker_settings["AMRUTAM_WORKER_METRICS_PORT"]
    assert httpx.get(f"http://127.0.0.1:{port}/livez").json() == {"status": "ok"}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'amrutam_celery_queue_depth{queue="notifications"}' in text
    assert "amrutam_celery_tasks_total" in text


async def test_queue_depth_counts_waiting_tasks(worker_settings: dict[str, str]) -> None:
    queued = 3

    url = worker_settings["AMRUTAM_REDIS_URL"]
    idle = Celery("tests-depth", broker=url)
    name = f"depth-{uuid.uuid4().hex[:6]}"  # a queue no worker consumes
    for _ in range(queued):
        idle.send_task("workers.tasks.mark_no_shows", queue=name)
    redis = Redis.from_url(url)
    try:
        assert await queue_depth(redis, [name, "nobody"]) == {name: queued, "nobody": 0}
    finally:
        await redis.delete(name)
        await redis.aclose()


async def test_queue_depth_leaves_out_tasks_held_for_their_eta(
    worker: Worker, worker_settings: dict[str, str]
) -> None:
    """A retry waiting out its countdown sits in a worker (reserved, unacked) until its
    time: more workers would not run it sooner, so it is not depth to scale on."""
    url = worker_settings["AMRUTAM_REDIS_URL"]
    app = Celery("tests-eta", broker=url)
    app.send_task("workers.tasks.mark_no_shows", queue="maintenance", countdown=300)
    app.send_task("workers.tasks.mark_no_shows", queue="maintenance", countdown=300)
    redis = Redis.from_url(url)
    try:
        deadline = time.monotonic() + 20
        while await redis.hlen("unacked") < 2:  # the worker has taken both, to wait
            assert time.monotonic() < deadline, "the worker never reserved the tasks"
            await asyncio.sleep(0.1)
        assert await queue_depth(redis, ["maintenance"]) == {"maintenance": 0}
    finally:
        await redis.aclose()
