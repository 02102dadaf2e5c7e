"""AuditPartitionPolicy: the real operator keeps partitions ahead in a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from amrutam_operator.audit_partitions import _due, _ready

from amrutam.audit import partitions
from amrutam.audit.partitions import MONTHLY
from amrutam.dev.servers import PostgresServer, free_port
from amrutam.infra.migrate import upgrade
from tests.operator.conftest import GROUP, Cluster, condition, eventually, series

pytestmark = pytest.mark.asyncio(loop_scope="package")


@pytest.fixture(scope="module")
def database(workdir: Path) -> Iterator[PostgresServer]:
    """A server of its own: the outage test stops it."""
    server = PostgresServer(workdir / "pg-operator", free_port(), settings={"fsync": "off"})
    server.start()
    server.create_database("amrutam")
    upgrade(server.url("amrutam"))
    yield server
    server.stop("immediate")


def dsn(server: PostgresServer) -> str:
    return server.url("amrutam", driver="postgresql")


async def partition_names(server: PostgresServer) -> set[str]:
    conn = await asyncpg.connect(dsn(server))
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'audit_logs'::regclass"
        )
    finally:
        await conn.close()
    return {r["relname"] for r in rows}


async def plant_in_default(server: PostgresServer, when: datetime, count: int) -> None:
    conn = await asyncpg.connect(dsn(server))
    try:
        for _ in range(count):
            await conn.execute(
                "INSERT INTO audit_logs (id, occurred_at, actor_role, action, entity_type, "
                "entity_id, detail, row_hash) VALUES ($1, $2, 'system', 'test.planted', "
                "'test', 'x', '{}', 'h')",
                uuid.uuid4(),
                when,
            )
    finally:
        await conn.close()


async def test_policy_creates_partitions_moves_default_rows_and_reports(
    cluster: Cluster, database: PostgresServer
) -> None:
    # Rows for a month far ahead land in the default partition (no partition yet).
    month = MONTHLY.shift(MONTHLY.floor(datetime.now(UTC)), 10)
    await plant_in_default(database, month.replace(day=15), 3)
    await cluster.secret("db-owner", dsn=dsn(database))

    await cluster.apply(
        "auditpartitionpolicies",
        "audit",
        {"databaseSecretRef": {"name": "db-owner", "key": "dsn"}, "premake": 6},
    )
    policy = await eventually(
        lambda: (
            (p := cluster.resource("auditpartitionpolicies", "audit"))
            and condition(p, "Ready")
            and condition(p, "Ready")["status"] == "True"
            and p
        )
    )
    status = policy["status"]
    current = MONTHLY.floor(datetime.now(UTC))
    wanted = {f"audit_logs_{MONTHLY.shift(current, k).strftime('%Y_%m')}" for k in range(7)}
    names = await partition_names(database)
    assert wanted <= names
    assert f"audit_logs_{month.strftime('%Y_%m')}" in names
    assert status["defaultPartitionRows"] == 0
    assert status["lastMaintenance"]["movedFromDefault"] == 3
    assert status["partitions"] == len(names) - 1  # all but the default partition
    assert status["observedGeneration"] == 1
    assert condition(policy, "HorizonMet")["status"] == "True"
    assert condition(policy, "DefaultPartitionEmpty")["status"] == "True"
    await eventually(
        lambda: any(e["reason"] == "PartitionsMaintained" for e in cluster.events("audit"))
    )

    # A changed spec is picked up at once, not at the next checkInterval.
    await cluster.apply("auditpartitionpolicies", "audit", {"premake": 12})
    await eventually(
        lambda: (
            cluster.resource("auditpartitionpolicies", "audit")["status"].get("observedGeneration")
            == 2
        )
    )
    assert f"audit_logs_{MONTHLY.shift(current, 12).strftime('%Y_%m')}" in await partition_names(
        database
    )

    # Deleted, it leaves no metric series behind.
    assert series("AuditPartitionPolicy", "audit") != []
    await cluster.delete("auditpartitionpolicies", "audit")
    await eventually(lambda: cluster.gone("auditpartitionpolicies", "audit"))
    assert series("AuditPartitionPolicy", "audit") == []


async def test_database_outage_is_a_condition_and_an_event_then_recovers(
    cluster: Cluster, database: PostgresServer
) -> None:
    await cluster.secret("db-outage", dsn=dsn(database))
    database.stop("immediate")
    try:
        await cluster.apply(
            "auditpartitionpolicies",
            "outage",
            {"databaseSecretRef": {"name": "db-outage", "key": "dsn"}, "checkInterval": 3600},
        )
        failed = await eventually(
            lambda: (
                (c := condition(cluster.resource("auditpartitionpolicies", "outage"), "Ready"))
                and c["status"] == "False"
                and c
            )
        )
        assert failed["reason"] == "MaintenanceFailed"
        warnings = await eventually(
            lambda: [e for e in cluster.events("outage") if e["type"] == "Warning"]
        )
        assert warnings[0]["reason"] == "MaintenanceFailed"
    finally:
        database.start()
    # Retried with backoff, without anyone touching the resource.
    await eventually(
        lambda: (
            condition(cluster.resource("auditpartitionpolicies", "outage"), "Ready")["status"]
            == "True"
        ),
        timeout=30,
    )


async def test_a_failed_reconcile_turns_its_other_conditions_unknown(
    cluster: Cluster, database: PostgresServer
) -> None:
    """N15: a failure set Ready=False and kept HorizonMet and DefaultPartitionEmpty at
    their last True, which the failed run had not checked."""

    def status_of(type_: str) -> str | None:
        found = condition(cluster.resource("auditpartitionpolicies", "n15"), type_)
        return found["status"] if found else None

    await cluster.secret("db-n15", dsn=dsn(database))
    spec = {"databaseSecretRef": {"name": "db-n15", "key": "dsn"}, "checkInterval": 3600}
    await cluster.apply("auditpartitionpolicies", "n15", spec)
    await eventually(lambda: status_of("HorizonMet") == "True")
    database.stop("immediate")
    try:
        await cluster.apply("auditpartitionpolicies", "n15", {**spec, "premake": 4})
        await eventually(lambda: status_of("Ready") == "False")
        policy = cluster.resource("auditpartitionpolicies", "n15")
        for type_ in ("HorizonMet", "DefaultPartitionEmpty"):
            cond = condition(policy, type_) or {}
            assert (cond["status"], cond["reason"]) == ("Unknown", "MaintenanceFailed"), cond
    finally:
        database.start()


async def test_a_missing_secret_is_reported_not_crashed_on(cluster: Cluster) -> None:
    await cluster.apply(
        "auditpartitionpolicies", "nosecret", {"databaseSecretRef": {"name": "absent"}}
    )
    cond = await eventually(
        lambda: condition(cluster.resource("auditpartitionpolicies", "nosecret"), "Ready")
    )
    assert cond["status"] == "False"
    assert cond["reason"] == "SecretUnusable"
    assert "absent" in cond["message"]


async def test_a_suspended_policy_says_so_in_its_status(cluster: Cluster) -> None:
    spec = {"databaseSecretRef": {"name": "no-such-secret", "key": "dsn"}, "suspend": True}
    await cluster.apply("auditpartitionpolicies", "audit-held", spec)
    ready = await eventually(
        lambda: condition(cluster.resource("auditpartitionpolicies", "audit-held"), "Ready")
    )
    assert (ready["status"], ready["reason"]) == ("True", "Suspended")


async def test_a_contended_run_is_ready_and_a_skewed_clock_is_not() -> None:
    """Giving way to a lock is the design working (audit writes went on): Ready, reason
    Contended, retried within a minute. A clock that disagrees with the database's
    withholds retention until it is fixed: Ready=False, reason ClockSkew."""
    moment = datetime.now(UTC)
    gave_way = partitions.Report(time=moment, contended=["audit_logs_2031_01"])
    assert (_ready(gave_way)["status"], _ready(gave_way)["reason"]) == ("True", "Contended")
    skewed = partitions.Report(time=moment, refused="clock skew of 7200 s with the database")
    assert (_ready(skewed)["status"], _ready(skewed)["reason"]) == ("False", "ClockSkew")
    last = {"lastMaintenance": {"time": moment.isoformat(), "contended": ["x"]}}
    status = {"observedGeneration": 1, **last}
    assert not _due({"checkInterval": 3600}, status, 1)  # not before a minute has passed
    status["lastMaintenance"]["time"] = (moment - timedelta(seconds=61)).isoformat()
    assert _due({"checkInterval": 3600}, status, 1)


async def test_drop_detaches_first_and_drops_only_after_the_grace_once_a_backup_holds_it(
    cluster: Cluster, database: PostgresServer
) -> None:
    now = datetime.now(UTC)
    month = MONTHLY.shift(MONTHLY.floor(now), -5)  # rows of long ago, stranded in default
    await plant_in_default(database, month.replace(day=10), 2)
    table = f"audit_logs_{month.strftime('%Y_%m')}"
    await cluster.secret("db-drop", dsn=dsn(database))
    # The schedule whose last full backup the drop waits for (none yet).
    schedule = {"repo": {"type": "posix"}, "configMapRef": {"name": "absent"}}
    await cluster.create(
        GROUP, "backupschedules", {"metadata": {"name": "bks-drop"}, "spec": schedule}
    )
    retention = {"keep": 2, "action": "drop", "dropAfterDays": 1}
    spec = {
        "databaseSecretRef": {"name": "db-drop", "key": "dsn"},
        "premake": 1,
        "checkInterval": 10,
        "retention": retention | {"backupScheduleRef": {"name": "bks-drop"}},
    }
    await cluster.apply("auditpartitionpolicies", "audit-drop", spec)

    def last() -> dict[str, Any]:
        found = cluster.resource("auditpartitionpolicies", "audit-drop")
        return dict((found.get("status") or {}).get("lastMaintenance") or {})

    # Phase one: detached, kept for the grace period; its rows are all still there.
    first = await eventually(lambda: table in last().get("detached", []) and last())
    assert f"{table}: kept until" in " ".join(first["awaitingDrop"])
    conn = await asyncpg.connect(dsn(database))
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 2
        # Two days on (its stamp set back), and a full backup finished after the detach.
        stamp = f"{partitions.DETACHED}{(now - timedelta(days=2)).isoformat()}"
        await conn.execute(f"COMMENT ON TABLE {table} IS '{stamp}'")
        finished = (now - timedelta(days=1)).isoformat()
        await cluster.patch(
            GROUP,
            "backupschedules",
            "bks-drop",
            {"status": {"lastBackups": {"full": {"finishedAt": finished}}}},
        )
        await eventually(lambda: table in last().get("dropped", []), timeout=60)
        assert await conn.fetchval("SELECT to_regclass($1)", table) is None
    finally:
        await conn.close()
