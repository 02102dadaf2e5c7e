"""Keeping the audit trail's range partitions ahead of time, and applying retention.

Unlike pg_partman this does not wait for data: ``premake`` future partitions always
exist. Rows that landed in the DEFAULT partition (because maintenance had not run)
are moved into the partition created for them, in the same transaction, instead of
blocking maintenance. After a long gap it creates only what retention keeps.
Idempotent: a second run with nothing new to do changes nothing.

Retention detaches what falls out of ``keep`` (the table stays, out of the parent, stamped
with the time in a comment). ``drop`` is two-phase: a detached table is dropped only
``drop_after`` later, only when a full backup finished after its detach (so its rows are
in a backup), and at most ``max_drops`` per run. Rows stranded in the default partition
older than the cutoff get their partition too, and are detached with it: the default
partition empties and nothing is lost.

It cannot hurt the database it keeps. Time is the database's (``now()``), and retention
acts only while the caller's clock agrees with it within ``MAX_SKEW``: a skewed pod
clock must not detach or drop a year of audit trail. Every DDL transaction runs with a
``lock_timeout``: a statement that would wait behind a long query gives up (reported as
contended, retried by the next run) instead of queueing every audit insert behind its
lock. (``DETACH ... CONCURRENTLY`` would avoid the wait, but PostgreSQL refuses it on a
table with a default partition, which this one keeps.)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from amrutam.audit.actions import Action
from amrutam.audit.log import SYSTEM, record

OWNER_ROLE = "amrutam_owner"
MAX_SKEW = timedelta(minutes=1)
LOCK_TIMEOUT = timedelta(seconds=2)
DROP_AFTER = timedelta(days=30)
DETACHED = "amrutam:detached="  # the comment a detached partition carries, with the time


@dataclass(frozen=True)
class Interval:
    name: str
    pg_unit: str

    def floor(self, moment: datetime) -> datetime:
        moment = moment.astimezone(UTC)
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.name == "monthly":
            return day.replace(day=1)
        if self.name == "weekly":
            return day - timedelta(days=day.weekday())
        return day

    def next(self, start: datetime) -> datetime:
        if self.name == "monthly":
            return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        return start + timedelta(days=7 if self.name == "weekly" else 1)

    def shift(self, start: datetime, count: int) -> datetime:
        for _ in range(abs(count)):
            start = self.next(start) if count > 0 else self.floor(start - timedelta(days=1))
        return start

    def suffix(self, start: datetime) -> str:
        if self.name == "monthly":
            return start.strftime("%Y_%m")
        if self.name == "weekly":
            year, week, _ = start.isocalendar()
            return f"{year}_w{week:02d}"
        return start.strftime("%Y_%m_%d")


MONTHLY = Interval("monthly", "month")
WEEKLY = Interval("weekly", "week")
DAILY = Interval("daily", "day")
INTERVALS = {i.name: i for i in (MONTHLY, WEEKLY, DAILY)}

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_BOUNDS = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def _check(table: str) -> str:
    if not _IDENT.match(table):
        raise ValueError(f"not a table name we manage: {table!r}")
    return table


def partition_name(table: str, interval: Interval, start: datetime) -> str:
    return f"{_check(table)}_{interval.suffix(start)}"


def create_partition_sql(table: str, interval: Interval, start: datetime) -> list[str]:
    """Statements that add an (empty-default) partition; used by the first migration."""
    name, end = partition_name(table, interval, start), interval.next(start)
    return [
        f"CREATE TABLE {name} PARTITION OF {table} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {name} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only()",
        f"ALTER TABLE {name} OWNER TO {OWNER_ROLE}",
    ]


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime
    end: datetime


@dataclass
class Report:
    time: datetime
    created: list[str] = field(default_factory=list)
    detached: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    moved_from_default: int = 0
    contended: list[str] = field(default_factory=list)  # gave way to a lock; next run
    refused: str | None = None  # why retention did not act (a skewed clock)
    awaiting_drop: list[str] = field(default_factory=list)  # detached, not yet droppable

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "time": self.time.isoformat(),
            "created": self.created,
            "detached": self.detached,
            "dropped": self.dropped,
            "movedFromDefault": self.moved_from_default,
        }
        if self.contended:
            found["contended"] = self.contended
        if self.refused:
            found["refused"] = self.refused
        if self.awaiting_drop:
            found["awaitingDrop"] = self.awaiting_drop
        return found

    @property
    def changed(self) -> bool:
        return bool(self.created or self.detached or self.dropped or self.moved_from_default)


async def partitions(conn: asyncpg.Connection, table: str) -> list[Partition]:
    rows = await conn.fetch(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = $1::regclass
        """,
        _check(table),
    )
    found = []
    for row in rows:
        match = _BOUNDS.search(row["bound"])
        if match:
            start, end = (datetime.fromisoformat(v).astimezone(UTC) for v in match.groups())
            found.append(Partition(row["relname"], start, end))
    return sorted(found, key=lambda p: p.start)


async def status(conn: asyncpg.Connection, table: str = "audit_logs") -> dict[str, Any]:
    parts = await partitions(conn, table)
    default_rows = await conn.fetchval(f"SELECT count(*) FROM {_check(table)}_default")
    return {
        "horizon": parts[-1].end.isoformat() if parts else None,
        "partitions": len(parts),
        "oldest": parts[0].name if parts else None,
        "newest": parts[-1].name if parts else None,
        "defaultPartitionRows": int(default_rows),
    }


async def maintain(
    conn: asyncpg.Connection,
    *,
    table: str = "audit_logs",
    interval: Interval = MONTHLY,
    premake: int = 3,
    keep: int | None = None,
    action: str = "detach",
    now: datetime | None = None,
    clock: datetime | None = None,
    lock_timeout: timedelta = LOCK_TIMEOUT,
    drop_after: timedelta = DROP_AFTER,
    max_drops: int = 1,
    backed_up_at: datetime | None = None,
) -> Report:
    """Create what is missing, move default-partition rows, apply retention.

    ``now`` replaces the database's time (a simulated clock, for data at scale and
    tests); ``clock`` is the caller's own time, checked against the database's before
    retention acts (the process clock when not given). ``backed_up_at`` is when the
    newest full backup finished: ``drop`` drops nothing detached after it."""
    if action not in ("detach", "drop"):
        raise ValueError("retention action is detach or drop")
    if keep is not None and keep < 1:
        raise ValueError("retention keeps at least the current interval (keep >= 1)")
    if max_drops < 1:
        raise ValueError("max_drops is at least 1")
    table = _check(table)
    database_now = (await conn.fetchval("SELECT now()")).astimezone(UTC)
    skew = abs((clock or datetime.now(UTC)) - database_now)
    now = (now or database_now).astimezone(UTC)
    report = Report(time=now)
    ddl = _Ddl(conn, lock_timeout, report)
    current = interval.floor(now)
    cutoff = interval.shift(current, -keep) if keep is not None else None
    existing = {p.start: p for p in await partitions(conn, table)}

    wanted = {interval.shift(current, k) for k in range(premake + 1)}
    stranded = await conn.fetch(
        f"SELECT DISTINCT date_trunc('{interval.pg_unit}', occurred_at AT TIME ZONE 'UTC') "
        f"AS period FROM {table}_default"
    )
    # Stranded rows older than the cutoff too: they get their partition (and retention
    # detaches it below), rather than staying in the default partition for ever.
    wanted |= {interval.floor(row["period"].replace(tzinfo=UTC)) for row in stranded}

    for start in sorted(wanted - existing.keys()):
        name = partition_name(table, interval, start)
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            continue  # detached earlier: late rows of its range stay in the default partition
        async with ddl.given_way(name):
            moved = await _create(conn, table, name, start, interval.next(start))
            report.moved_from_default += moved
            report.created.append(name)
            existing[start] = Partition(name, start, interval.next(start))

    if cutoff is None:
        return report
    old = [p for p in existing.values() if p.end <= cutoff and p.name not in report.contended]
    if skew > MAX_SKEW:
        if old or action == "drop":
            report.refused = (
                f"clock skew of {skew.total_seconds():.0f} s with the database: no retention"
            )
        return report
    for part in sorted(old, key=lambda p: p.start):
        async with ddl.given_way(part.name):
            await conn.execute(f"ALTER TABLE {table} DETACH PARTITION {part.name}")
            await conn.execute(f"COMMENT ON TABLE {part.name} IS '{DETACHED}{now.isoformat()}'")
            report.detached.append(part.name)
    if action == "drop":
        await _drop_detached(conn, ddl, table, now, drop_after, max_drops, backed_up_at, report)
    return report


async def _drop_detached(
    conn: asyncpg.Connection,
    ddl: _Ddl,
    table: str,
    now: datetime,
    drop_after: timedelta,
    max_drops: int,
    backed_up_at: datetime | None,
    report: Report,
) -> None:
    """The second phase of ``drop``: detached long enough, and in a full backup since."""
    rows = await conn.fetch(
        r"""
        SELECT c.relname, obj_description(c.oid, 'pg_class') AS note
        FROM pg_class c
        WHERE c.relkind = 'r' AND c.relname LIKE $1 || '\_%'
          AND NOT c.relispartition
          AND obj_description(c.oid, 'pg_class') LIKE $2 || '%'
        """,
        table,
        DETACHED,
    )
    detached = sorted(
        (datetime.fromisoformat(row["note"].removeprefix(DETACHED)), row["relname"]) for row in rows
    )
    for detached_at, name in detached:
        if now - detached_at < drop_after:
            report.awaiting_drop.append(
                f"{name}: kept until {(detached_at + drop_after).isoformat()}"
            )
        elif backed_up_at is None or backed_up_at <= detached_at:
            report.awaiting_drop.append(f"{name}: no full backup since its detach")
        elif len(report.dropped) >= max_drops:
            report.awaiting_drop.append(f"{name}: next run (at most {max_drops} per run)")
        else:
            async with ddl.given_way(name):
                await conn.execute(f"DROP TABLE {name}")
                report.dropped.append(name)


class _Ddl:
    """One transaction per DDL step, as the owner, under the lock timeout; a step that
    meets a lock it cannot get in time is rolled back and reported as contended."""

    def __init__(self, conn: asyncpg.Connection, lock_timeout: timedelta, report: Report):
        self.conn, self.report = conn, report
        self.timeout_ms = max(int(lock_timeout.total_seconds() * 1000), 1)

    @asynccontextmanager
    async def given_way(self, name: str) -> AsyncIterator[None]:
        try:
            async with self.conn.transaction():
                await self.conn.execute(f"SET LOCAL ROLE {OWNER_ROLE}")
                await self.conn.execute(f"SET LOCAL lock_timeout = {self.timeout_ms}")
                yield
        except asyncpg.LockNotAvailableError:
            self.report.contended.append(name)


async def _create(
    conn: asyncpg.Connection, table: str, name: str, start: datetime, end: datetime
) -> int:
    """In the caller's transaction: a new table, the default partition's rows in range
    moved into it, attached as the partition for [start, end). Returns how many rows
    moved."""
    await conn.execute("SET LOCAL amrutam.audit_maintenance = 'on'")
    await conn.execute(
        f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    moved = await conn.fetchval(
        f"""
        WITH moved AS (
            DELETE FROM {table}_default WHERE occurred_at >= $1 AND occurred_at < $2
            RETURNING *
        ), kept AS (INSERT INTO {name} SELECT * FROM moved RETURNING 1)
        SELECT count(*) FROM kept
        """,
        start,
        end,
    )
    await conn.execute(
        f"ALTER TABLE {table} ATTACH PARTITION {name} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )
    await conn.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {name} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only()"
    )
    if moved:
        await record(
            conn,
            SYSTEM,
            Action.AUDIT_PARTITION_ROWS_MOVED,
            "partition",
            name,
            {"rows": int(moved), "from": f"{table}_default"},
        )
    return int(moved)
