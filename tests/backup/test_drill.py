"""The disaster-recovery drill, for real: pgBackRest backs up a live PostgreSQL that
archives its WAL; a table is dropped; the database comes back exactly as it was."""

from __future__ import annotations

import time

from click.testing import CliRunner

from amrutam.backups import status
from amrutam.cli import main
from tests.backup.conftest import Archived, faked


def cli(archived: Archived, *args: str) -> tuple[int, str]:
    env = {
        "AMRUTAM_BACKUP_CONFIG": str(archived.repo.config),
        "AMRUTAM_BACKUP_STANZA": archived.repo.stanza,
        "AMRUTAM_DATABASE_ADMIN_URL": archived.server.url("amrutam"),
    }
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_point_in_time_restore_after_a_dropped_table(archived: Archived) -> None:
    archived.sql(
        "CREATE TABLE drill (id int PRIMARY KEY, written_at timestamptz DEFAULT clock_timestamp())"
    )
    archived.sql("INSERT INTO drill (id) SELECT g FROM generate_series(1, 100) g")
    assert cli(archived, "backup", "full") == (0, "full backup taken\n")

    archived.sql("INSERT INTO drill (id) SELECT g FROM generate_series(101, 200) g")
    time.sleep(1)
    moment = archived.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
        '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\')'
    )
    time.sleep(1)
    archived.sql("INSERT INTO drill (id) SELECT g FROM generate_series(201, 300) g")
    archived.sql("CREATE TABLE after_t AS SELECT 1 AS marker")
    archived.sql("DROP TABLE drill")  # the disaster

    code, output = cli(archived, "backup", "check")
    assert code == 0, output
    code, output = cli(archived, "backup", "info")
    assert code == 0, output
    assert "You can restore to any second from" in output
    assert "Last full backup" in output

    # To T: every row written before T, none after, and the table is back.
    code, output = cli(
        archived, "backup", "restore", "--to", moment, "--into", str(archived.scratch / "at-t")
    )
    assert code == 0, output
    copy = archived.restored(archived.scratch / "at-t")
    try:
        rows = copy.psql("SELECT count(*), min(id), max(id) FROM drill", database="amrutam")
        assert rows.strip() == "200|1|200"
        assert copy.psql("SELECT to_regclass('after_t') IS NULL", database="amrutam").strip() == "t"
    finally:
        copy.stop("immediate")

    # To the latest moment: everything, the disaster included.
    code, output = cli(
        archived, "backup", "restore", "--to", "latest", "--into", str(archived.scratch / "latest")
    )
    assert code == 0, output
    copy = archived.restored(archived.scratch / "latest")
    try:
        assert copy.psql("SELECT marker FROM after_t", database="amrutam").strip() == "1"
        assert copy.psql("SELECT to_regclass('drill') IS NULL", database="amrutam").strip() == "t"
    finally:
        copy.stop("immediate")


def test_restore_refuses_a_target_outside_the_window_and_a_used_directory(
    archived: Archived,
) -> None:
    if not archived.repo.info().get("backup"):
        archived.repo.backup("full")
    code, output = cli(
        archived,
        "backup",
        "restore",
        "--to",
        "2001-01-01T00:00:00Z",
        "--into",
        str(archived.scratch / "old"),
    )
    assert code == 1
    assert "outside the recovery window" in output
    assert not (archived.scratch / "old").exists()  # refused before any work

    (archived.scratch / "used").mkdir()
    (archived.scratch / "used" / "PG_VERSION").write_text("15")
    code, output = cli(
        archived, "backup", "restore", "--to", "latest", "--into", str(archived.scratch / "used")
    )
    assert code == 1
    assert "not empty" in output


def test_differential_and_incremental_backups_and_retention(archived: Archived) -> None:
    archived.repo.backup("full")  # an older full backup ...
    archived.repo.backup("full")  # ... and the newest, which diff and incr build on
    archived.sql("CREATE TABLE IF NOT EXISTS kept (id int)")
    archived.sql("INSERT INTO kept VALUES (1)")
    archived.repo.backup("diff")
    archived.sql("INSERT INTO kept VALUES (2)")
    archived.repo.backup("incr")
    kinds = {b.kind for b in status.backups(archived.repo.info())}
    assert kinds == {"full", "differential", "incremental"}
    fulls = [b for b in status.backups(archived.repo.info()) if b.kind == "full"]
    assert len(fulls) >= 2

    # Ten days on, a 7-day window needs only the newest full backup (and what depends
    # on it): the older fulls and their WAL go; the newest chain stays.
    faked(10, archived.repo, "expire")
    left = status.backups(archived.repo.info())
    assert [b.kind for b in left] == ["full", "differential", "incremental"]
    assert left[0].label == fulls[-1].label

    # What is left still restores, to the latest moment.
    archived.repo.check()
    into = archived.scratch / "after-expire"
    code, output = cli(archived, "backup", "restore", "--to", "latest", "--into", str(into))
    assert code == 0, output
    copy = archived.restored(into)
    try:
        assert copy.psql("SELECT count(*) FROM kept", database="amrutam").strip() == "2"
    finally:
        copy.stop("immediate")
