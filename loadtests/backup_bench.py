"""Backup and restore times for a database of a given size (default about 1 GB).

    python -m loadtests.backup_bench [--scale 70]

A PostgreSQL with durable settings archives to a local pgBackRest repository; the
platform's schema and pgbench's tables fill it; we time a full backup, an incremental
after 5% more writes, a restore of the latest state into a new directory, the restored
server's start (its recovery), and a restore drill (the operator's restore program and
probe: `amrutam backup drill`), whose recovery time and point are printed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from amrutam.backups import drill, status
from amrutam.backups.config import archiving_settings, prepare_local
from amrutam.backups.pgbackrest import PgBackRest
from amrutam.dev.servers import PostgresServer, free_port
from amrutam.infra.migrate import upgrade
from amrutam.infra.system import as_postgres_user, chown_to_postgres
from amrutam.settings import DEV_AUDIT_KEY


def timed(label: str, action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    took = time.perf_counter() - start
    print(f"{label:<42} {took:8.1f} s", flush=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 ≈ 1 GB)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="amrutam-backup-bench-"))
    root.chmod(0o755)
    server = PostgresServer(root / "pg", free_port())
    config = prepare_local(root / "pgbackrest", "bench", server.datadir, server.port)
    server.include("archiving.conf", archiving_settings(config, "bench"))
    server.start()
    repo = PgBackRest(config, "bench")
    pgbench = [
        str(server.bindir / "pgbench"),
        "-h",
        "127.0.0.1",
        "-p",
        str(server.port),
        "-U",
        "postgres",
    ]
    try:
        server.create_database("bench")
        upgrade(server.url("bench"))  # the platform's tables, for the drill's probe
        repo.stanza_create()
        timed(
            f"pgbench -i -s {args.scale}",
            lambda: subprocess.run(
                as_postgres_user([*pgbench, "-q", "-i", "-s", str(args.scale), "bench"]),
                check=True,
                capture_output=True,
            ),
        )
        size = int(server.psql("SELECT pg_database_size('bench')"))
        print(f"{'database size':<42} {size / 2**30:8.2f} GiB")
        timed("full backup", lambda: repo.backup("full"))
        timed(
            "5% more writes (pgbench, 20 s)",
            lambda: subprocess.run(
                as_postgres_user([*pgbench, "-T", "20", "-c", "4", "-N", "bench"]),
                check=True,
                capture_output=True,
            ),
        )
        timed("incremental backup", lambda: repo.backup("incr"))
        repo.check()
        found = status.backups(repo.info())
        for b in found:
            print(
                f"{b.kind + ' ' + b.label:<42} {b.size / 2**20:8.0f} MiB, "
                f"{b.repo_size / 2**20:.0f} MiB in the repository"
            )
        print(f"{'repository size (backups)':<42} {status.repo_size(found) / 2**20:8.0f} MiB")
        total = sum(
            p.stat().st_size for p in (root / "pgbackrest" / "repo").rglob("*") if p.is_file()
        )
        print(f"{'repository on disk (backups + WAL)':<42} {total / 2**20:8.0f} MiB")
        into = root / "restored"
        into.mkdir(mode=0o700)
        chown_to_postgres(into)
        timed("restore (latest) into a new directory", lambda: repo.restore(into, None))
        copy = PostgresServer(into, free_port(), settings={"archive_mode": "off"})

        def start_and_promote() -> None:
            copy.start()
            while copy.psql("SELECT pg_is_in_recovery()").strip() != "f":
                time.sleep(0.2)

        timed("restored server start (WAL replay)", start_and_promote)
        copy.stop()
        # Writes after the last backup: the drill must replay them from the archive.
        subprocess.run(
            as_postgres_user([*pgbench, "-T", "5", "-c", "2", "-N", "bench"]),
            check=True,
            capture_output=True,
        )
        repo.check()
        report: dict[str, object] = {}
        timed(
            "drill: restore program + boot + probe",
            lambda: report.update(
                drill.local(repo, "bench", DEV_AUDIT_KEY.encode(), server.bindir)
            ),
        )
        print(drill.describe(report))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
