"""The audit trail in a database of its own: append-only, tamper-evident, partitioned."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

from amrutam.audit import partitions as parts
from amrutam.audit.log import SYSTEM, Actor, record
from amrutam.audit.schemas import AuditQuery
from amrutam.audit.seals import seal, verify
from amrutam.audit.service import build_query
from amrutam.dev.servers import PostgresServer
from amrutam.infra.migrate import upgrade
from tests.factories import pg_dsn

KEY = b"test-audit-key-test-audit-key-0123456789"


@pytest.fixture(scope="module")
def trail_dsn(postgres: PostgresServer) -> str:
    postgres.create_database("amrutam_audit")
    url = postgres.url("amrutam_audit")
    upgrade(url)
    return pg_dsn(url)


@pytest.fixture
async def admin(trail_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(trail_dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def app(trail_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(trail_dsn.replace("://postgres@", "://amrutam_app@"))
    yield conn
    await conn.close()


async def _plant(conn: asyncpg.Connection, when: datetime, count: int, tag: str) -> None:
    """Rows written as the application would, but at a chosen time (via a clock shim)."""
    import amrutam.audit.log as log

    real = log.utcnow
    try:
        for i in range(count):
            log.utcnow = lambda i=i: when + timedelta(seconds=i)  # type: ignore[misc]
            await record(conn, SYSTEM, "test.planted", "test", tag, {"i": i})
    finally:
        log.utcnow = real  # type: ignore[misc]


async def test_application_role_can_only_insert_and_read(app: asyncpg.Connection) -> None:
    actor = Actor(uuid.uuid4(), "patient", "rid", "10.0.0.1")
    await record(app, actor, "test.insert", "test", "x")
    assert await app.fetchval("SELECT count(*) FROM audit_logs WHERE action = 'test.insert'") >= 1
    for statement in (
        "UPDATE audit_logs SET action = 'x'",
        "DELETE FROM audit_logs",
        "TRUNCATE audit_logs",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.execute(statement)


async def test_even_the_owner_cannot_change_or_remove_rows(admin: asyncpg.Connection) -> None:
    await record(admin, SYSTEM, "test.owner", "test", "y")
    partition = (await parts.partitions(admin, "audit_logs"))[0].name
    async with admin.transaction():
        await admin.execute("SET LOCAL ROLE amrutam_owner")
        for statement in (
            "UPDATE audit_logs SET action = 'x' WHERE action = 'test.owner'",
            "DELETE FROM audit_logs WHERE action = 'test.owner'",
            "TRUNCATE audit_logs",
            f"TRUNCATE {partition}",
            "TRUNCATE audit_logs_default",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                async with admin.transaction():
                    await admin.execute(statement)


async def test_verify_finds_a_row_altered_by_a_superuser(admin: asyncpg.Connection) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    await _plant(admin, start, 5, "alter")
    window = (start, start + timedelta(minutes=1))
    assert (await verify(admin, KEY, *window)).ok
    await admin.execute("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_update_delete")
    try:
        await admin.execute(
            "UPDATE audit_logs SET detail = '{\"i\": 99}' WHERE entity_id = 'alter' AND "
            "detail->>'i' = '2'"
        )
    finally:
        await admin.execute("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_no_update_delete")
    verdict = await verify(admin, KEY, *window)
    assert not verdict.ok
    assert verdict.first_bad is not None
    assert verdict.first_bad["reason"] == "row altered"


async def test_seals_catch_deleted_and_rehashed_rows(trail_dsn: str) -> None:
    """A separate history far in the past, so its seals do not mix with the others."""
    conn = await asyncpg.connect(trail_dsn)
    try:
        first = await conn.fetchval("SELECT min(occurred_at) FROM audit_logs")
        assert first is not None  # earlier tests wrote rows; seal from there on
        await seal(conn, KEY)
        sealed = await conn.fetchval("SELECT count(*) FROM audit_seals")
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        before = await verify(conn, KEY, hour, hour + timedelta(hours=1))
        assert before.ok
        # Rows inside an hour that will be sealed: plant, seal, then tamper.
        await _plant(conn, hour + timedelta(minutes=5), 4, "sealed")
        await conn.execute(
            "DELETE FROM audit_seals WHERE period_start >= $1", hour
        )  # the hour was sealed empty above; seal it again with its rows
        await seal(conn, KEY)
        assert await conn.fetchval("SELECT count(*) FROM audit_seals") >= sealed
        window = (hour, hour + timedelta(hours=1))
        assert (await verify(conn, KEY, *window)).ok

        await conn.execute("ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_no_update_delete")
        try:
            await conn.execute(
                "DELETE FROM audit_logs WHERE entity_id = 'sealed' AND detail->>'i' = '1'"
            )
        finally:
            await conn.execute("ALTER TABLE audit_logs ENABLE TRIGGER audit_logs_no_update_delete")
        verdict = await verify(conn, KEY, *window)
        assert not verdict.ok
        assert verdict.first_bad is not None
        assert verdict.first_bad["reason"] == "rows deleted or inserted"
        # Forging a seal without the key does not help: the chain no longer matches.
        await conn.execute(
            "UPDATE audit_seals SET row_count = row_count - 1 WHERE period_start = $1", hour
        )
        assert not (await verify(conn, KEY, *window)).ok
    finally:
        await conn.close()


async def test_time_bounded_queries_touch_only_partitions_in_range(
    admin: asyncpg.Connection,
) -> None:
    await parts.maintain(admin, premake=3)
    now = datetime.now(UTC)
    month = parts.MONTHLY.floor(now)
    query = AuditQuery.model_validate(
        {
            "from": month.isoformat(),
            "to": (month + timedelta(days=10)).isoformat(),
            "action": "auth.login",
        }
    )
    sql, args = build_query(query)
    plan = orjson.loads(await admin.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))[0]["Plan"]

    def relations(node: dict) -> set[str]:  # type: ignore[type-arg]
        found = {node["Relation Name"]} if "Relation Name" in node else set()
        for child in node.get("Plans", []):
            found |= relations(child)
        return found

    assert relations(plan) == {parts.partition_name("audit_logs", parts.MONTHLY, month)}


# Last of the database tests: its simulated clock detaches today's partitions.
async def test_maintenance_catches_up_moves_default_rows_and_retains(
    admin: asyncpg.Connection,
) -> None:
    table_now = datetime(2031, 1, 15, tzinfo=UTC)
    first = await parts.maintain(admin, premake=2, now=table_now)
    assert {"audit_logs_2031_01", "audit_logs_2031_02", "audit_logs_2031_03"} <= set(first.created)
    # Ten months without maintenance: rows for August land in the default partition.
    await _plant(admin, datetime(2031, 8, 3, tzinfo=UTC), 7, "gap")
    status = await parts.status(admin)
    assert status["defaultPartitionRows"] >= 7
    # Outside maintenance, rows in the default partition are as immutable as any.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with admin.transaction():
            await admin.execute("SET LOCAL ROLE amrutam_owner")
            await admin.execute("DELETE FROM audit_logs_default")

    later = datetime(2031, 11, 20, tzinfo=UTC)
    report = await parts.maintain(admin, premake=2, keep=6, action="detach", now=later)
    assert "audit_logs_2031_08" in report.created
    assert {"audit_logs_2031_11", "audit_logs_2032_01"} <= set(report.created)
    # Retention keeps six months back from November: nothing before May is made or kept.
    assert not [n for n in report.created if n < "audit_logs_2031_05"]
    assert {"audit_logs_2031_01", "audit_logs_2031_02", "audit_logs_2031_03"} <= set(
        report.detached
    )
    assert report.moved_from_default >= 7
    after = await parts.status(admin)
    assert after["defaultPartitionRows"] == 0
    assert (
        await admin.fetchval("SELECT count(*) FROM audit_logs_2031_08 WHERE entity_id = 'gap'") == 7
    )
    # The move audited itself, at the real time: in this month's partition, which the
    # simulated clock has since detached (it is older than six months in 2031).
    this_month = parts.partition_name(
        "audit_logs", parts.MONTHLY, parts.MONTHLY.floor(datetime.now(UTC))
    )
    assert this_month in report.detached
    moved = await admin.fetchval(
        f"SELECT count(*) FROM {this_month} WHERE action = 'audit.partition_rows_moved' "
        "AND entity_id = 'audit_logs_2031_08'"
    )
    assert moved == 1

    again = await parts.maintain(admin, premake=2, keep=6, action="detach", now=later)
    assert not again.changed


def test_interval_arithmetic() -> None:
    moment = datetime(2030, 12, 31, 23, 0, tzinfo=UTC)
    assert parts.MONTHLY.next(parts.MONTHLY.floor(moment)) == datetime(2031, 1, 1, tzinfo=UTC)
    assert parts.MONTHLY.shift(datetime(2031, 3, 1, tzinfo=UTC), -3) == datetime(
        2030, 12, 1, tzinfo=UTC
    )
    assert parts.WEEKLY.floor(moment).weekday() == 0
    # Monday 2030-12-30 begins ISO week 1 of 2031.
    assert parts.partition_name("audit_logs", parts.WEEKLY, parts.WEEKLY.floor(moment)) == (
        "audit_logs_2031_w01"
    )
    assert parts.DAILY.next(datetime(2031, 2, 28, tzinfo=UTC)) == datetime(2031, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="table name"):
        parts.partition_name("audit_logs; drop table users", parts.DAILY, moment)
