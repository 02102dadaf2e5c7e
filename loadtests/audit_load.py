"""Load the audit trail at scale and time the admin queries and verify.

``python -m loadtests.audit_load [--rows 5000000] [--months 24]`` creates (or reuses) a
database ``amrutam_audit_load`` on the local stack's PostgreSQL, makes the monthly
partitions, COPYs the rows in with a progress bar, and prints the latency of typical
admin queries (median of repeated runs) and of ``verify`` over an hour, a day and a
month. A measurement, not a test.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import click

from amrutam.audit import partitions
from amrutam.audit.schemas import AuditQuery
from amrutam.audit.seals import seal, verify
from amrutam.audit.service import build_query
from amrutam.dev.scale import AUDIT_COLUMNS, audit_records
from amrutam.dev.stack import LocalStack
from amrutam.infra.db import libpq_dsn
from amrutam.infra.migrate import upgrade
from amrutam.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "amrutam_audit_load"
ACTIONS = [
    "auth.login",
    "appointment.booked",
    "consultation.viewed",
    "prescription.viewed",
    "appointment.cancelled",
    "slot.created",
    "auth.refresh",
    "prescription.issued",
]
CHUNK = 50_000
KEY = b"load-test-audit-key-0123456789abcdef"


async def _timed(label: str, run: Callable[[], Awaitable[Any]], repeat: int = 7) -> None:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        times.append((time.perf_counter() - started) * 1000)
    click.echo(
        f"  {label:58} median {statistics.median(times):8.1f} ms  "
        f"(min {min(times):.1f}, max {max(times):.1f})"
    )


async def main(dsn: str, rows: int, months: int) -> None:
    conn = await asyncpg.connect(dsn)
    now = datetime.now(UTC)
    start = partitions.MONTHLY.shift(partitions.MONTHLY.floor(now), -months)
    await partitions.maintain(conn, premake=months + 2, now=start)
    existing = await conn.fetchval("SELECT count(*) FROM audit_logs WHERE action <> 'seed'")
    rng = random.Random(42)
    actors = [uuid.uuid4() for _ in range(20_000)]
    span = (now - start).total_seconds()
    if existing < rows:
        todo = rows - existing
        loaded = time.perf_counter()
        with click.progressbar(length=todo, label="loading audit rows") as bar:
            while todo > 0:
                batch = audit_records(min(CHUNK, todo), start, span, actors, rng, ACTIONS)
                await conn.copy_records_to_table("audit_logs", records=batch, columns=AUDIT_COLUMNS)
                todo -= len(batch)
                bar.update(len(batch))
        click.echo(f"loaded in {time.perf_counter() - loaded:.0f} s")
        await conn.execute("ANALYZE audit_logs")
    total = await conn.fetchval("SELECT count(*) FROM audit_logs")
    size = await conn.fetchval(
        "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'audit_logs'::regclass"
    )
    click.echo(f"{total} audit rows over {months} months, {size} with indexes")

    async def query(**params: Any) -> None:
        sql, args = build_query(AuditQuery.model_validate(params))
        await conn.fetch(sql, *args)

    day = now - timedelta(days=3)
    actor = str(actors[7])
    click.echo("admin queries (one page of 20):")
    await _timed("newest entries, no filter", lambda: query())
    await _timed("one actor, all time", lambda: query(actor_id=actor))
    await _timed(
        "one actor, last 30 days",
        lambda: query(actor_id=actor, **{"from": (now - timedelta(days=30)).isoformat()}),
    )
    await _timed(
        "one action, one day",
        lambda: query(
            action="prescription.viewed",
            **{"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()},
        ),
    )
    await _timed(
        "one entity", lambda: query(entity_type="appointment", entity_id=str(uuid.uuid4()))
    )

    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    click.echo("sealing the last three days (hourly seals)...")
    await conn.execute("DELETE FROM audit_seals")
    sealed_from = hour - timedelta(days=1)
    # Seal from a recent point: a full 24-month seal chain is a one-off job.
    await conn.execute(
        "INSERT INTO audit_seals (period_start, period_end, row_count, digest) "
        "VALUES ($1, $1, 0, $2)",
        sealed_from,
        "0" * 64,
    )
    started = time.perf_counter()
    count = await seal(conn, KEY)
    click.echo(f"  {count} hours sealed in {time.perf_counter() - started:.1f} s")
    click.echo("verify:")
    await _timed("one hour", lambda: verify(conn, KEY, hour, hour + timedelta(hours=1)), 5)
    await _timed("one day", lambda: verify(conn, KEY, hour, hour + timedelta(days=1)), 3)
    await _timed(
        "30 days (row hashes only beyond the seals)",
        lambda: verify(conn, KEY, now - timedelta(days=30), now),
        1,
    )
    await conn.close()


@click.command()
@click.option("--rows", default=5_000_000, show_default=True)
@click.option("--months", default=24, show_default=True)
def cli(rows: int, months: int) -> None:
    stack = LocalStack.from_settings(get_settings(), ROOT / ".local")
    stack.up()
    stack.postgres.create_database(DATABASE)
    admin_url = stack.postgres.url(DATABASE)
    upgrade(admin_url)  # Alembic runs its own event loop: before ours
    asyncio.run(main(libpq_dsn(admin_url), rows, months))


if __name__ == "__main__":
    cli()
