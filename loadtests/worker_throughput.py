"""Outbox relay and notification worker throughput: ``python -m loadtests.worker_throughput``.

Writes N ``appointment.booked`` events into the outbox of the local stack, starts one
worker (2 processes, log provider), triggers the relay and reports how fast events were
published and confirmations delivered. A measurement, not a test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import click
from celery import Celery

from amrutam.dev.stack import LocalStack
from amrutam.infra.db import libpq_dsn
from amrutam.infra.migrate import upgrade
from amrutam.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent


async def _load(dsn: str, count: int) -> str:
    conn = await asyncpg.connect(dsn)
    tag = uuid.uuid4().hex[:8]
    patients = [uuid.uuid4() for _ in range(count)]
    await conn.copy_records_to_table(
        "users",
        records=[
            (p, f"tp-{tag}-{i}@example.com", "!", "Throughput", "patient")
            for i, p in enumerate(patients)
        ],
        columns=["id", "email", "password_hash", "full_name", "role"],
    )
    await conn.copy_records_to_table(
        "outbox",
        records=[
            (
                uuid.uuid4(),
                "appointment.booked",
                uuid.uuid4(),
                f'{{"appointment_id": "{uuid.uuid4()}", "patient_id": "{p}", '
                f'"doctor_id": "{uuid.uuid4()}"}}',
            )
            for p in patients
        ],
        columns=["id", "event_type", "aggregate_id", "payload"],
    )
    await conn.close()
    return tag


async def _counts(dsn: str, tag: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        sent = await conn.fetchval(
            "SELECT count(*) FROM notifications n JOIN users u ON u.id = n.recipient_id "
            "WHERE u.email LIKE $1 AND n.status = 'sent'",
            f"tp-{tag}-%",
        )
        return int(pending), int(sent)
    finally:
        await conn.close()


@click.command()
@click.option("--events", default=5000, show_default=True)
def main(events: int) -> None:
    settings = get_settings()
    LocalStack.from_settings(settings, ROOT / ".local").up()
    upgrade(settings.database_admin_url)
    dsn = libpq_dsn(settings.database_admin_url)
    env = {**os.environ, "AMRUTAM_NOTIFICATION_PROVIDER": "log", "AMRUTAM_LOG_LEVEL": "WARNING"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "--loglevel=WARNING",
            "--queues=default,notifications",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        time.sleep(6)
        asyncio.run(_counts(dsn, "warm"))
        tag = asyncio.run(_load(dsn, events))
        started = time.perf_counter()
        Celery("bench", broker=settings.redis_url).send_task(
            "workers.tasks.relay_outbox", queue="default"
        )
        relayed_at = None
        while True:
            pending, sent = asyncio.run(_counts(dsn, tag))
            now = time.perf_counter() - started
            if pending == 0 and relayed_at is None:
                relayed_at = now
            if sent >= events or now > 600:
                break
            time.sleep(0.5)
        click.echo(
            f"{events} events: relay published all in {relayed_at:.1f} s "
            f"({events / (relayed_at or now):.0f}/s); confirmations delivered in "
            f"{now:.1f} s ({sent / now:.0f}/s end to end, one worker, 2 processes)"
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait()


if __name__ == "__main__":
    main()
