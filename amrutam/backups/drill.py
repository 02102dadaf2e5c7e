"""Restore drills: proving that a backup boots and holds the platform's data.

A drill restores the latest backup into scratch space, boots PostgreSQL on it until
recovery ends, and probes the copy: the row counts of the main tables, and the audit
seal chain verified with the signing key (a copy that boots but whose audit trail no
longer verifies is not a recovery). The same probe runs in the operator's drill Job and
in ``amrutam backup drill`` on one host.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from amrutam.audit import seals
from amrutam.backups.pgbackrest import PgBackRest
from amrutam.backups.scripts import RESTORE_SCRIPT
from amrutam.backups.status import iso
from amrutam.infra.system import as_postgres_user, chown_to_postgres

MAIN_TABLES = (
    "users",
    "doctors",
    "availability_slots",
    "appointments",
    "consultations",
    "prescriptions",
    "audit_logs",
)


@dataclass(frozen=True)
class Probe:
    rows: dict[str, int]
    seals: seals.Verdict

    @property
    def ok(self) -> bool:
        return self.seals.ok

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "seals": self.seals.as_dict()}


async def probe(conn: asyncpg.Connection, key: bytes) -> Probe:
    rows = {}
    for table in MAIN_TABLES:
        rows[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    return Probe(rows, await seals.verify(conn, key))


async def recovered_to(conn: asyncpg.Connection) -> datetime | None:
    """The commit time of the last transaction recovery replayed: the point the copy
    actually reached (None when no transaction was replayed after the backup)."""
    found: datetime | None = await conn.fetchval("SELECT pg_last_xact_replay_timestamp()")
    return found


class DrillError(Exception):
    """The drill could not restore, boot or read the copy."""


def wait_for_restore(run_dir: Path, wait_s: float) -> None:
    """Until the restore program has booted the copy (or given up)."""
    deadline = time.monotonic() + wait_s
    while not (run_dir / "ready").exists():
        if (run_dir / "done").exists():
            raise DrillError("the restore failed: nothing to probe")
        if time.monotonic() > deadline:
            raise DrillError(f"no restored server after {wait_s:.0f} s")
        time.sleep(0.5)


async def read_copy(run_dir: Path, database: str, key: bytes) -> dict[str, Any]:
    """The probe's report on the copy served on ``run_dir``'s socket."""
    conn = await asyncpg.connect(host=str(run_dir), user="postgres", database=database)
    try:
        found = await probe(conn, key)
        reached = await recovered_to(conn)
    finally:
        await conn.close()
    return {**found.as_dict(), "recoveredTo": iso(reached) if reached else None}


def local(repo: PgBackRest, database: str, key: bytes, bindir: Path) -> dict[str, Any]:
    """A drill on this host: the latest backup restored into a temporary directory by the
    Jobs' own restore program, booted, probed, and thrown away. Returns the restore
    program's report (``recoverySeconds``), the probe's, and when the drill began."""
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="amrutam-drill-") as folder:
        root = Path(folder)
        chown_to_postgres(root)
        run_dir = root / "run"
        env = {
            **os.environ,
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PGBACKREST_CONFIG": str(repo.config),
            "PGDATA": str(root / "pgdata"),
            "RUN_DIR": str(run_dir),
            "PGBACKREST_SPOOL_PATH": str(run_dir / "spool"),
            "RESULT": str(root / "result.json"),
            "PROBE_WAIT_S": "3600",
        }
        command = ["sh", "-c", RESTORE_SCRIPT, "restore", f"--stanza={repo.stanza}"]
        restore = subprocess.Popen(
            as_postgres_user(command),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_restore(run_dir, 6 * 3600)
            probed = asyncio.run(read_copy(run_dir, database, key))
        finally:
            (run_dir / "probed").touch()
            _, errors = restore.communicate()
        if restore.returncode != 0:
            raise DrillError(f"the restore program failed: {errors[-2000:]}")
        restored = json.loads((root / "result.json").read_text())
    return {"startedAt": iso(started), **restored, "probe": probed}


def describe(report: dict[str, Any]) -> str:
    """The drill's figures in plain words: recovery time, recovery point, what it held."""
    probed = report["probe"]
    lines = [f"Recovery time: {report['recoverySeconds']} s (restore, WAL replay, promotion)"]
    if probed["recoveredTo"]:
        began = datetime.fromisoformat(report["startedAt"].replace("Z", "+00:00"))
        reached = datetime.fromisoformat(probed["recoveredTo"].replace("Z", "+00:00"))
        lines.append(
            f"Recovery point: {probed['recoveredTo']}, "
            f"{(began - reached).total_seconds():.0f} s before the drill began"
        )
    else:
        lines.append("Recovery point: the backup's end (no transaction replayed after it)")
    lines.append("Rows: " + ", ".join(f"{t} {n}" for t, n in probed["rows"].items()))
    verdict = "verifies" if probed["ok"] else "DOES NOT VERIFY"
    lines.append(f"Audit seal chain: {verdict} ({probed['seals']['checked']} rows)")
    return "\n".join(lines)
