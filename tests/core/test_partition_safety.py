"""Partition maintenance cannot hurt the database it keeps (kubernetes review D5): its
DDL gives way to long queries instead of queueing every insert behind its lock, and
retention withholds itself when the caller's clock disagrees with the database's.

A table of its own, shaped like the audit trail, so no other test's partitions move.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from amrutam.audit import partitions as parts
from amrutam.dev.servers import PostgresServer
from amrutam.infra.migrate import upgrade
from tests.factories import pg_dsn

TABLE = "probe_trail"


@pytest.fixture(scope="module")
def safety_dsn(postgres: PostgresServer) -> str:
    postgres.create_database("amrutam_partition_safety")
    url = postgres.url("amrutam_partition_safety")
    upgrade(url)
    return pg_dsn(url)


@pytest.fixture
async def admin(safety_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(safety_dsn)
    await conn.execute(f"DROP TABLE IF EXISTS {TABLE} CASCADE")
    for name in await conn.fetch(  # what earlier tests detached (no longer in the parent)
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE $1", f"{TABLE}\\_%"
    ):
        await conn.execute(f"DROP TABLE {name['relname']}")
    await conn.execute(f"SET ROLE {parts.OWNER_ROLE}")
    await conn.execute(
        f"CREATE TABLE {TABLE} (LIKE audit_logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        "PARTITION BY RANGE (occurred_at)"
    )
    await conn.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")
    await conn.execute("RESET ROLE")
    yield conn
    await conn.close()


async def insert(conn: asyncpg.Connection, when: datetime) -> None:
    await conn.execute(
        f"INSERT INTO {TABLE} (id, occurred_at, action, entity_type, entity_id, detail, row_hash) "
        "VALUES ($1, $2, 'test.insert', 'test', 'x', '{}', 'h')",
        uuid.uuid4(),
        when,
    )


async def test_ddl_gives_way_to_a_long_query_and_inserts_go_through(
    admin: asyncpg.Connection, safety_dsn: str
) -> None:
    january = datetime(2031, 1, 15, tzinfo=UTC)
    await parts.maintain(admin, table=TABLE, premake=2, now=january)  # Jan, Feb, Mar
    reader = await asyncpg.connect(safety_dsn)
    writer = await asyncpg.connect(safety_dsn)
    try:
        # A long report holds its lock on the table for as long as it runs.
        await reader.execute("BEGIN")
        await reader.fetchval(f"SELECT count(*) FROM {TABLE}")
        # Retention wants January detached, which needs the table to itself.
        march = datetime(2031, 3, 15, tzinfo=UTC)
        maintenance = asyncio.create_task(
            parts.maintain(
                admin,
                table=TABLE,
                premake=0,
                keep=1,
                now=march,
                lock_timeout=timedelta(seconds=1),
            )
        )
        await asyncio.sleep(0.2)  # it is waiting for the lock now
        # An insert meanwhile must not queue behind it (it would, behind a DDL that waits
        # for the lock without a limit: this statement_timeout would then fail it).
        await writer.execute("SET statement_timeout = '10s'")
        await insert(writer, datetime(2031, 3, 10, tzinfo=UTC))
        report = await maintenance
        assert report.contended == [f"{TABLE}_2031_01"]
        assert report.detached == []
        attached = {p.name for p in await parts.partitions(admin, TABLE)}
        assert f"{TABLE}_2031_01" in attached
    finally:
        await reader.execute("ROLLBACK")
        await reader.close()
        await writer.close()
    # The lock gone, the next run does what this one could not.
    again = await parts.maintain(admin, table=TABLE, premake=0, keep=1, now=march)
    assert again.detached == [f"{TABLE}_2031_01"]
    assert again.contended == []


async def test_retention_is_withheld_when_the_callers_clock_disagrees(
    admin: asyncpg.Connection,
) -> None:
    # Partitions of the real past, which retention (keep one month) would remove.
    database_now = (await admin.fetchval("SELECT now()")).astimezone(UTC)
    long_ago = database_now - timedelta(days=400)
    await parts.maintain(admin, table=TABLE, premake=1, now=long_ago)
    before = {p.name for p in await parts.partitions(admin, TABLE)}

    ahead = database_now + timedelta(hours=2)  # a pod clock two hours fast
    report = await parts.maintain(admin, table=TABLE, keep=1, action="drop", clock=ahead)
    assert report.dropped == []
    assert report.refused is not None
    assert "clock skew" in report.refused
    assert before <= {p.name for p in await parts.partitions(admin, TABLE)}

    # Agreeing clocks: retention runs, on the database's time (detaching first).
    report = await parts.maintain(admin, table=TABLE, keep=1, action="drop")
    assert report.refused is None
    assert report.dropped == []
    assert set(report.detached) == {
        n
        for n in before
        if n
        < parts.partition_name(
            TABLE, parts.MONTHLY, parts.MONTHLY.shift(parts.MONTHLY.floor(database_now), -1)
        )
    }


async def test_retention_keeps_at_least_the_current_interval(admin: asyncpg.Connection) -> None:
    with pytest.raises(ValueError, match="keep >= 1"):
        await parts.maintain(admin, table=TABLE, keep=0, action="drop")


async def detached_tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE $1 "
        "AND NOT relispartition AND relname <> $2",
        f"{TABLE}\\_%",
        f"{TABLE}_default",
    )
    return {row["relname"] for row in rows}


async def test_drop_waits_for_the_grace_period_and_a_newer_full_backup(
    admin: asyncpg.Connection,
) -> None:
    january = datetime(2031, 1, 15, tzinfo=UTC)
    await parts.maintain(admin, table=TABLE, premake=3, now=january)  # Jan to Apr
    june = datetime(2031, 6, 10, tzinfo=UTC)
    retention = {"table": TABLE, "premake": 0, "keep": 1, "action": "drop"}

    # Phase one: out of the parent, still there.
    first = await parts.maintain(admin, **retention, now=june)
    old = [f"{TABLE}_2031_0{m}" for m in (1, 2, 3, 4)]
    assert first.detached == old
    assert first.dropped == []
    assert await detached_tables(admin) == set(old)
    assert all("kept until" in a for a in first.awaiting_drop)

    # Past the grace period, but no full backup since the detach: kept.
    later = june + parts.DROP_AFTER + timedelta(days=1)
    before_detach = june - timedelta(hours=1)
    for backed_up_at in (None, before_detach):
        report = await parts.maintain(admin, **retention, now=later, backed_up_at=backed_up_at)
        assert report.dropped == []
        assert report.awaiting_drop == [f"{n}: no full backup since its detach" for n in old]
    assert await detached_tables(admin) == set(old)

    # With a newer full backup: dropped, oldest first, at most max_drops a run.
    backed_up = june + timedelta(days=2)
    report = await parts.maintain(
        admin, **retention, now=later, backed_up_at=backed_up, max_drops=3
    )
    assert report.dropped == old[:3]
    assert report.awaiting_drop == [f"{old[3]}: next run (at most 3 per run)"]
    report = await parts.maintain(admin, **retention, now=later, backed_up_at=backed_up)
    assert report.dropped == old[3:]
    assert await detached_tables(admin) == set()


async def test_default_rows_older_than_the_cutoff_are_partitioned_and_detached(
    admin: asyncpg.Connection,
) -> None:
    march = datetime(2031, 3, 15, tzinfo=UTC)
    await parts.maintain(admin, table=TABLE, premake=1, now=march)
    stranded = datetime(2030, 6, 5, tzinfo=UTC)  # before any partition: in the default
    for _ in range(3):
        await insert(admin, stranded)
    assert await admin.fetchval(f"SELECT count(*) FROM {TABLE}_default") == 3

    report = await parts.maintain(admin, table=TABLE, premake=1, keep=1, now=march)
    assert report.moved_from_default == 3
    assert f"{TABLE}_2030_06" in report.created
    assert f"{TABLE}_2030_06" in report.detached
    assert await admin.fetchval(f"SELECT count(*) FROM {TABLE}_default") == 0
    assert await admin.fetchval(f"SELECT count(*) FROM {TABLE}_2030_06") == 3  # kept
