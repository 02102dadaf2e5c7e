"""BackupSchedule and PointInTimeRestore: CronJobs and Jobs in the emulator, status from
a real pgBackRest repository and a real PostgreSQL archiving to it, and the Jobs the
operator creates run for real (tests/operator/jobs.py) with their outcome reported back."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from amrutam_operator import metrics, repository, restores

from amrutam.backups import status
from amrutam.backups.config import prepare_local
from amrutam.backups.pgbackrest import PgBackRest
from amrutam.backups.scripts import BACKUP_SCRIPT
from amrutam.settings import DEV_AUDIT_KEY
from tests.backup.conftest import Archived, archived_server
from tests.operator.conftest import Cluster, condition, eventually, series
from tests.operator.jobs import from_cronjob, report, run_job
from tests.pods import Finished

pytestmark = pytest.mark.asyncio(loop_scope="package")


@pytest_asyncio.fixture(autouse=True, loop_scope="package")
async def _one_schedule_at_a_time(cluster: Cluster) -> AsyncIterator[None]:
    """Each test's resources go when it ends: the schedules refresh from pgBackRest every
    half second here, and a dozen of them would share two cores with the next test."""
    yield
    await cluster.forget_custom_resources()


@pytest.fixture(scope="module")
def archived(workdir: Path) -> Iterator[Archived]:
    root = workdir / "operator-backups"
    root.mkdir()
    found = archived_server(root)
    found.repo.backup("full")
    yield found
    found.server.stop("immediate")


def repo_path(archived: Archived) -> str:
    return str(archived.root / "pgbackrest" / "repo")


def schedule_spec(config_map: str, archived: Archived, **overrides: Any) -> dict[str, Any]:
    return {
        "stanza": "amrutam",
        "repo": {"type": "posix", "path": repo_path(archived)},
        "configMapRef": {"name": config_map},
        "databaseSecretRef": {"name": "archiver-db", "key": "dsn"},
        "schedules": {
            "full": "0 1 * * 0",
            "differential": "0 1 * * 1-6",
            "incremental": "0 */4 * * *",
        },
        "retention": {"pitrWindowDays": 7},
        "jobDeadlineSeconds": 7200,
        **overrides,
    }


def env_of(cronjob: dict[str, Any]) -> dict[str, str]:
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def cronjobs(cluster: Cluster, owner: str) -> dict[str, dict[str, Any]]:
    return {
        name: obj.raw
        for (resource, _, name), obj in cluster.emulator.objects.items()
        if resource.plural == "cronjobs"
        and not obj.deleted
        and obj.raw["metadata"]["labels"]["platform.amrutam.io/backup-schedule"] == owner
    }


def jobs(cluster: Cluster, prefix: str) -> dict[str, dict[str, Any]]:
    return {
        name: obj.raw
        for (resource, _, name), obj in cluster.emulator.objects.items()
        if resource.plural == "jobs" and name.startswith(prefix) and not obj.deleted
    }


async def repo_config(cluster: Cluster, name: str, config: Path) -> None:
    await cluster.create(
        "v1",
        "configmaps",
        {"metadata": {"name": name}, "data": {"pgbackrest.conf": config.read_text()}},
    )


async def test_schedule_owns_cronjobs_and_reports_the_repository(
    cluster: Cluster, archived: Archived
) -> None:
    await repo_config(cluster, "pgbr-main", archived.repo.config)
    await cluster.secret("archiver-db", dsn=archived.dsn())
    await cluster.apply("backupschedules", "main", schedule_spec("pgbr-main", archived))

    made = await eventually(
        lambda: len(cronjobs(cluster, "main")) == 3 and cronjobs(cluster, "main")
    )
    full = made["main-full"]
    assert full["spec"]["schedule"] == "0 1 * * 0"
    assert full["spec"]["concurrencyPolicy"] == "Forbid"
    assert full["spec"]["startingDeadlineSeconds"] > 0  # one catch-up run after an outage
    job = full["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 7200
    (container,) = job["template"]["spec"]["containers"]
    assert container["command"][:4] == ["sh", "-c", BACKUP_SCRIPT, "backup"]
    # The spec's repository, passed as options (tests/backup/test_cluster_jobs.py runs it).
    assert container["command"][4:] == [
        "--stanza=amrutam",
        "--repo1-type=posix",
        f"--repo1-path={repo_path(archived)}",
    ]
    assert env_of(full)["PGBACKREST_TYPE"] == "full"
    assert env_of(full)["PGBACKREST_REPO1_RETENTION_FULL"] == "7"  # retention.pitrWindowDays
    assert env_of(made["main-incremental"])["PGBACKREST_TYPE"] == "incr"
    owner = full["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("BackupSchedule", "main")

    # Status from the real repository: the full backup the fixture took, and the window.
    (backup,) = status.backups(archived.repo.info())
    bks = await eventually(
        lambda: (
            (b := cluster.resource("backupschedules", "main")).get("status", {}).get("lastBackups")
            and b
        )
    )
    assert bks["status"]["lastBackups"]["full"]["label"] == backup.label
    assert bks["status"]["lastBackups"]["full"]["sizeBytes"] == backup.size
    assert bks["status"]["recoveryWindow"]["from"] == status.iso(backup.finished)
    assert condition(bks, "WALArchiving")["status"] == "True"
    assert condition(bks, "BackupFresh")["status"] == "True"  # nothing was due yet
    window = condition(bks, "WindowMet")
    assert (window["status"], window["reason"]) == ("True", "Filling")  # a new installation
    ready = condition(bks, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Recoverable")
    assert bks["status"]["recoveryWindow"]["length"].endswith("h")  # the Window column

    # A changed schedule is patched, a removed one deleted.
    changed = schedule_spec("pgbr-main", archived)
    # (null removes a key in a merge patch, as kubectl sends it)
    changed["schedules"] = {"full": "30 2 * * 0", "differential": None}
    await cluster.apply("backupschedules", "main", changed)
    await eventually(lambda: set(cronjobs(cluster, "main")) == {"main-full", "main-incremental"})
    await eventually(
        lambda: cronjobs(cluster, "main")["main-full"]["spec"]["schedule"] == "30 2 * * 0"
    )


async def test_wal_archiving_failure_turns_the_condition_false_despite_a_good_backup(
    cluster: Cluster, archived: Archived
) -> None:
    await repo_config(cluster, "pgbr-wal", archived.repo.config)
    await cluster.secret("archiver-db", dsn=archived.dsn())
    await cluster.apply("backupschedules", "wal", schedule_spec("pgbr-wal", archived))
    await eventually(
        lambda: (
            condition(cluster.resource("backupschedules", "wal"), "WALArchiving")["status"]
            == "True"
        )
    )
    archived.sql("ALTER SYSTEM SET archive_command = '/bin/false'")
    archived.sql("SELECT pg_reload_conf()")
    try:
        archived.sql("CREATE TABLE IF NOT EXISTS wal_probe (id int)")
        archived.sql("INSERT INTO wal_probe VALUES (1)")
        archived.sql("SELECT pg_switch_wal()")
        cond = await eventually(
            lambda: (
                (c := condition(cluster.resource("backupschedules", "wal"), "WALArchiving"))
                and c["status"] == "False"
                and c
            ),
            timeout=60,
        )
        assert cond["reason"] == "ArchiveFailing"
        bks = cluster.resource("backupschedules", "wal")
        ready = await eventually(
            lambda: (
                (r := condition(cluster.resource("backupschedules", "wal"), "Ready"))
                and r["status"] == "False"
                and r
            )
        )
        assert ready["reason"] == "ArchiveFailing"
        assert bks["status"]["lastBackups"]["full"]  # the last backup still looks fine
        await eventually(
            lambda: any(e["reason"] == "ArchiveFailing" for e in cluster.events("wal"))
        )
    finally:
        archived.sql("ALTER SYSTEM RESET archive_command")
        archived.sql("SELECT pg_reload_conf()")
    archived.repo.check()
    await eventually(
        lambda: condition(cluster.resource("backupschedules", "wal"), "Ready")["status"] == "True",
        timeout=60,
    )


async def test_a_schedule_that_never_ran_is_overdue(cluster: Cluster, archived: Archived) -> None:
    # A second, empty repository for the same database: no backup ever reached it.
    config = prepare_local(
        archived.root / "empty-repo", "amrutam", archived.server.datadir, archived.server.port
    )
    PgBackRest(config, "amrutam").stanza_create()
    await repo_config(cluster, "pgbr-empty", config)
    await cluster.secret("archiver-db", dsn=archived.dsn())  # the database answers
    empty = schedule_spec("pgbr-empty", archived)
    empty["repo"]["path"] = str(archived.root / "empty-repo" / "repo")
    await cluster.apply("backupschedules", "stale", empty)
    # As if it had been created a month ago, with weekly fulls due since.
    await cluster.patch(
        "platform.amrutam.io/v1alpha1",
        "backupschedules",
        "stale",
        {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z", "generation": 2}},
    )
    cond = await eventually(
        lambda: (
            (c := condition(cluster.resource("backupschedules", "stale"), "BackupFresh"))
            and c["status"] == "False"
            and c
        )
    )
    assert "full due" in cond["message"]
    bks = cluster.resource("backupschedules", "stale")
    assert bks["status"].get("recoveryWindow") is None
    window = condition(bks, "WindowMet")  # a month old, and nothing to restore
    assert (window["status"], window["reason"]) == ("False", "NoBackup")
    # An empty repository gets its first full backup at once, not at the next run due.
    (first,) = (await eventually(lambda: jobs(cluster, "stale-first"))).values()
    assert first["metadata"]["labels"]["platform.amrutam.io/backup-type"] == "full"
    ready = await eventually(
        lambda: condition(cluster.resource("backupschedules", "stale"), "Ready")
    )
    assert (ready["status"], ready["reason"]) == ("False", "Overdue")


async def test_backup_now_annotation_runs_one_backup_per_value(
    cluster: Cluster, archived: Archived, workdir: Path
) -> None:
    await repo_config(cluster, "pgbr-now", archived.repo.config)
    await cluster.apply("backupschedules", "now", schedule_spec("pgbr-now", archived, schedules={}))
    await eventually(lambda: condition(cluster.resource("backupschedules", "now"), "Ready"))
    annotate = {
        "platform.amrutam.io/backup-now": "2026-11-28T12:00",
        "platform.amrutam.io/backup-type": "diff",
    }
    await cluster.patch(
        "platform.amrutam.io/v1alpha1",
        "backupschedules",
        "now",
        {"metadata": {"annotations": annotate}},
    )
    made = await eventually(lambda: jobs(cluster, "now-now-"))
    (job,) = made.values()
    assert env_of({"spec": {"jobTemplate": job}})["PGBACKREST_TYPE"] == "diff"
    await eventually(
        lambda: (
            cluster.resource("backupschedules", "now")["status"].get("oneOffBackup")
            == "2026-11-28T12:00"
        )
    )
    await asyncio.sleep(1)
    assert len(jobs(cluster, "now-now-")) == 1  # the same value never runs twice
    # The Job itself, run: a differential backup lands in the repository.
    before = [b.label for b in status.backups(archived.repo.info())]
    (name,) = jobs(cluster, "now-now-")
    results = await run_job(cluster, name, workdir / "jobs", host_paths=(str(workdir),))
    assert results["pgbackrest"].ok, results["pgbackrest"].output
    after = status.backups(archived.repo.info())
    assert [b.kind for b in after if b.label not in before] == ["differential"]


async def test_a_backup_that_stood_down_is_reported_as_an_event(
    cluster: Cluster, archived: Archived
) -> None:
    await repo_config(cluster, "pgbr-skip", archived.repo.config)
    await cluster.apply("backupschedules", "skip", schedule_spec("pgbr-skip", archived))
    await eventually(lambda: cronjobs(cluster, "skip").get("skip-full"))
    await from_cronjob(cluster, "skip-full", "skip-full-1")
    # What the backup program reports when it stands down (test_cluster_jobs.py runs it).
    stood_down = Finished(
        "pgbackrest", 0, "skipped: another backup of the stanza held its lock for 3600s", ""
    )
    await report(cluster, "skip-full-1", {"pgbackrest": stood_down})
    event = await eventually(
        lambda: next((e for e in cluster.events("skip") if e["reason"] == "BackupSkipped"), None)
    )
    assert "skip-full-1" in event["message"]
    assert event["type"] == "Warning"


async def test_restore_outside_the_window_is_refused_before_any_work(
    cluster: Cluster, archived: Archived
) -> None:
    await repo_config(cluster, "pgbr-pitr", archived.repo.config)
    await cluster.apply("backupschedules", "pitr-src", schedule_spec("pgbr-pitr", archived))
    await eventually(
        lambda: cluster.resource("backupschedules", "pitr-src")["status"].get("recoveryWindow")
    )
    into = {"persistentVolumeClaim": {"name": "restore-old", "storage": "10Gi"}}
    await cluster.apply(
        "pointintimerestores",
        "too-old",
        {
            "backupScheduleRef": {"name": "pitr-src"},
            "target": {"time": "2001-01-01T00:00:00Z"},
            "into": into,
        },
    )
    restore = await eventually(
        lambda: (
            (r := cluster.resource("pointintimerestores", "too-old")).get("status", {}).get("phase")
            and r
        )
    )
    assert restore["status"]["phase"] == "Failed"
    cond = condition(restore, "Ready")
    assert (cond["status"], cond["reason"]) == ("False", "TargetRefused")
    assert "outside the recovery window" in cond["message"]
    assert not jobs(cluster, "too-old-restore")
    assert ("v1/persistentvolumeclaims", "default", "restore-old") not in [
        (f"{k[0].group + '/' if k[0].group else ''}{k[0].version}/{k[0].plural}", k[1], k[2])
        for k in cluster.emulator.objects
    ]


async def test_a_stalled_archiver_turns_wal_archiving_false_without_any_failure(
    cluster: Cluster, archived: Archived
) -> None:
    await repo_config(cluster, "pgbr-stall", archived.repo.config)
    await cluster.secret("archiver-db", dsn=archived.dsn())
    spec = schedule_spec("pgbr-stall", archived, walStallSeconds=30)
    await cluster.apply("backupschedules", "stall", spec)
    await eventually(
        lambda: condition(cluster.resource("backupschedules", "stall"), "Ready")["status"] == "True"
    )
    # An archive_command that hangs: PostgreSQL reports no failure, nothing is archived.
    archived.sql("ALTER SYSTEM SET archive_command = 'sleep 86399'")
    archived.sql("SELECT pg_reload_conf()")
    try:
        archived.sql("CREATE TABLE IF NOT EXISTS stall_probe (id int)")

        def stalled() -> dict[str, Any] | None:
            # WAL keeps being written (the archiver takes the new command at its own
            # pace; segments finished before that may still be archived).
            archived.sql("INSERT INTO stall_probe VALUES (1)")
            archived.sql("SELECT pg_switch_wal()")
            found = condition(cluster.resource("backupschedules", "stall"), "WALArchiving")
            return found if found and found["status"] == "False" else None

        cond = await eventually(stalled, timeout=150, every=3)
        assert cond["reason"] == "ArchiveStalled"
        assert "no failure reported" in cond["message"]
        ready = condition(cluster.resource("backupschedules", "stall"), "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "ArchiveStalled")
    finally:
        archived.sql("ALTER SYSTEM RESET archive_command")
        archived.sql("SELECT pg_reload_conf()")
        subprocess.run(["pkill", "-f", "sleep 86399"], check=False)
    await eventually(
        lambda: (
            condition(cluster.resource("backupschedules", "stall"), "Ready")["status"] == "True"
        ),
        timeout=90,
    )


async def test_an_unreadable_repository_makes_its_conditions_unknown_not_stale(
    cluster: Cluster, archived: Archived
) -> None:
    await cluster.secret("archiver-db", dsn=archived.dsn())
    await cluster.apply("backupschedules", "blind", schedule_spec("pgbr-blind", archived))
    ready = await eventually(
        lambda: (
            (r := condition(cluster.resource("backupschedules", "blind"), "Ready"))
            and r["status"] == "False"
            and r
        )
    )
    assert ready["reason"] == "RepositoryUnreadable"  # its ConfigMap does not exist yet
    bks = cluster.resource("backupschedules", "blind")
    assert condition(bks, "BackupFresh")["status"] == "Unknown"
    assert condition(bks, "WindowMet")["status"] == "Unknown"
    assert condition(bks, "WALArchiving")["status"] == "True"  # read on its own
    await repo_config(cluster, "pgbr-blind", archived.repo.config)
    await eventually(
        lambda: (
            condition(cluster.resource("backupschedules", "blind"), "Ready")["status"] == "True"
        ),
        timeout=90,
    )
    assert condition(cluster.resource("backupschedules", "blind"), "BackupFresh")["status"] == (
        "True"
    )


async def test_a_poll_running_when_its_schedule_is_deleted_sets_no_series_after_it(
    cluster: Cluster, archived: Archived, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kopf calls the deletion handler while a poll of the schedule's timer may still be
    running: a series that poll set after the handler removed them would stay (until kopf
    happened to call the handler again, as the emulator's cycles do), an alert's input for
    a schedule that no longer exists."""
    name = "race"
    await repo_config(cluster, "pgbr-race", archived.repo.config)
    await cluster.secret("archiver-db", dsn=archived.dsn())
    polling, go_on = threading.Event(), threading.Event()
    steps: list[str] = []
    read, figures, forget = repository.read, metrics.backup_figures, metrics.forget

    async def held_read(namespace: str, spec: dict[str, Any]) -> list[status.Backup]:
        if spec["configMapRef"]["name"] == "pgbr-race":  # this schedule's polls wait here
            polling.set()
            await asyncio.to_thread(go_on.wait, 30)
        return await read(namespace, spec)

    def noted_figures(namespace: str, schedule: str, *args: Any) -> None:
        if schedule == name:  # (other tests' schedules may still be polling)
            steps.append("figures")
        figures(namespace, schedule, *args)

    def noted_forget(kind: str, namespace: str, schedule: str) -> None:
        if schedule == name:
            steps.append("forget")
        forget(kind, namespace, schedule)

    monkeypatch.setattr(repository, "read", held_read)
    monkeypatch.setattr(metrics, "backup_figures", noted_figures)
    monkeypatch.setattr(metrics, "forget", noted_forget)
    await cluster.apply("backupschedules", name, schedule_spec("pgbr-race", archived))
    await eventually(polling.is_set)
    await cluster.delete("backupschedules", name)
    await asyncio.sleep(2)  # the operator has seen the deletion while the poll waits
    go_on.set()  # the poll goes on, and sets the schedule's series

    await eventually(lambda: cluster.gone("backupschedules", name))
    assert steps[0] == "figures", steps  # the deletion waited for the poll
    assert "figures" not in steps[1:], steps  # and no poll set any after it
    assert series("BackupSchedule", name) == []


async def test_restore_drill_runs_for_real_and_reports_restore_verified(
    cluster: Cluster, archived: Archived, workdir: Path
) -> None:
    await repo_config(cluster, "pgbr-drill", archived.repo.config)
    await cluster.secret("archiver-db", dsn=archived.dsn())
    await cluster.secret("app-env", AMRUTAM_AUDIT_SIGNING_KEY=DEV_AUDIT_KEY)
    drill = {
        "schedule": "0 5 * * 0",
        "storage": "1Gi",
        "signingKeySecretRef": {"name": "app-env", "key": "AMRUTAM_AUDIT_SIGNING_KEY"},
    }
    await cluster.apply(
        "backupschedules", "drilled", schedule_spec("pgbr-drill", archived, drill=drill)
    )
    made = await eventually(lambda: cronjobs(cluster, "drilled").get("drilled-drill"))
    assert made["spec"]["schedule"] == "0 5 * * 0"
    archived.sql("CREATE TABLE IF NOT EXISTS drill_probe (id int)")
    archived.sql("INSERT INTO drill_probe SELECT generate_series(1, 7)")
    archived.repo.check()  # the rows' WAL is in the repository

    # The CronJob fires; its pod runs here; the cluster reports the outcome.
    await from_cronjob(cluster, "drilled-drill", "drilled-drill-1")
    host = (str(workdir),)
    results = await run_job(cluster, "drilled-drill-1", workdir / "jobs", host_paths=host)
    assert results["restore"].ok, results["restore"].output
    assert results["probe"].ok, results["probe"].output
    await report(cluster, "drilled-drill-1", results)
    bks = await eventually(
        lambda: (
            (b := cluster.resource("backupschedules", "drilled"))["status"].get("lastDrill") and b
        )
    )
    drilled = bks["status"]["lastDrill"]
    assert drilled["result"] == "Succeeded", drilled
    assert drilled["recoverySeconds"] >= 0
    assert drilled["rows"]["users"] == int(archived.sql("SELECT count(*) FROM users"))
    assert drilled["succeededAt"]
    verified = await eventually(
        lambda: condition(cluster.resource("backupschedules", "drilled"), "RestoreVerified")
    )
    assert (verified["status"], verified["reason"]) == ("True", "Verified")
    # Read once, the drill's Job is deleted (and its scratch volume with its pod).
    await eventually(lambda: not jobs(cluster, "drilled-drill-1"))
    await eventually(
        lambda: any(e["reason"] == "DrillSucceeded" for e in cluster.events("drilled"))
    )

    # A drill that cannot restore: RestoreVerified and Ready go False, with the reason.
    broken = schedule_spec("pgbr-drill", archived, drill=drill)
    broken["repo"]["path"] = str(workdir / "no-such-repository")
    await cluster.apply("backupschedules", "drilled", broken)
    await eventually(
        lambda: (
            str(workdir / "no-such-repository")
            in str(cronjobs(cluster, "drilled")["drilled-drill"]["spec"])
        )
    )
    await from_cronjob(cluster, "drilled-drill", "drilled-drill-2")
    failed = await run_job(cluster, "drilled-drill-2", workdir / "jobs", host_paths=host)
    assert not failed["restore"].ok
    await report(cluster, "drilled-drill-2", failed)
    verified = await eventually(
        lambda: (
            (c := condition(cluster.resource("backupschedules", "drilled"), "RestoreVerified"))
            and c["status"] == "False"
            and c
        )
    )
    assert verified["reason"] == "DrillFailed"
    assert "did not finish" in verified["message"]
    assert condition(cluster.resource("backupschedules", "drilled"), "Ready")["status"] == "False"


def pvc_exists(cluster: Cluster, name: str) -> bool:
    return any(
        resource.plural == "persistentvolumeclaims" and key == name and not obj.deleted
        for (resource, _, key), obj in cluster.emulator.objects.items()
    )


async def source_schedule(cluster: Cluster, archived: Archived, name: str) -> dict[str, Any]:
    await repo_config(cluster, f"pgbr-{name}", archived.repo.config)
    await cluster.apply("backupschedules", name, schedule_spec(f"pgbr-{name}", archived))
    window: dict[str, Any] = await eventually(
        lambda: cluster.resource("backupschedules", name)["status"].get("recoveryWindow")
    )
    return window


async def test_restore_into_a_claim_it_did_not_create_is_refused(
    cluster: Cluster, archived: Archived
) -> None:
    await source_schedule(cluster, archived, "pitr-live")
    # The live database's claim: a restore must never write into it.
    await cluster.create(
        "v1",
        "persistentvolumeclaims",
        {"metadata": {"name": "data-amrutam-postgresql-0"}, "spec": {}},
    )
    into = {"persistentVolumeClaim": {"name": "data-amrutam-postgresql-0", "storage": "10Gi"}}
    spec = {"backupScheduleRef": {"name": "pitr-live"}, "target": {"latest": True}, "into": into}
    await cluster.apply("pointintimerestores", "over-live", spec)
    ready = await eventually(
        lambda: condition(cluster.resource("pointintimerestores", "over-live"), "Ready")
    )
    assert (ready["status"], ready["reason"]) == ("False", "ClaimInUse")
    assert cluster.resource("pointintimerestores", "over-live")["status"]["phase"] == "Failed"
    await asyncio.sleep(1)
    assert not jobs(cluster, "over-live-restore")


async def test_restore_runs_for_real_and_reports_the_point_the_server_reached(
    cluster: Cluster, archived: Archived, workdir: Path
) -> None:
    await source_schedule(cluster, archived, "pitr-real")
    archived.sql("CREATE TABLE IF NOT EXISTS pitr_rows (id int)")
    archived.sql("INSERT INTO pitr_rows SELECT generate_series(1, 9)")
    await asyncio.sleep(1.1)
    target = datetime.now(UTC)
    await asyncio.sleep(1.1)
    archived.sql("INSERT INTO pitr_rows SELECT generate_series(10, 20)")
    archived.repo.check()
    await eventually(  # the window reaches past the target
        lambda: (
            cluster.resource("backupschedules", "pitr-real")["status"]["recoveryWindow"]["to"]
            > status.iso(target)
        )
    )
    into = {"persistentVolumeClaim": {"name": "restored-real", "storage": "10Gi"}}
    spec = {
        "backupScheduleRef": {"name": "pitr-real"},
        "target": {"time": status.iso(target)},
        "into": into,
    }
    await cluster.apply("pointintimerestores", "real", spec)
    await eventually(lambda: jobs(cluster, "real-restore-g1"))
    claim = cluster.get("v1", "persistentvolumeclaims", "restored-real")
    assert claim["metadata"]["annotations"][restores.OWNER]  # made for this restore

    folder = workdir / "claims" / "restored-real"
    results = await run_job(
        cluster,
        "real-restore-g1",
        workdir / "jobs",
        claims={"restored-real": folder},
        host_paths=(str(workdir),),
    )
    assert results["restore"].ok, results["restore"].output
    await report(cluster, "real-restore-g1", results)
    done = await eventually(
        lambda: (
            (r := cluster.resource("pointintimerestores", "real"))["status"]["phase"] == "Succeeded"
            and r
        )
    )
    reached = done["status"]["restoredTo"]
    assert status.iso(target - timedelta(seconds=3)) <= reached <= status.iso(target)
    assert condition(done, "Ready")["status"] == "True"
    copy = archived.restored(folder / "pgdata")
    try:
        assert copy.psql("SELECT count(*) FROM pitr_rows", database="amrutam") == "9"
        last = copy.psql(
            "SELECT to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\')',
            database="amrutam",
        )
    finally:
        copy.stop("immediate")
    # (after its own restart the copy no longer knows; the Job measured it while it did)
    assert last in ("", reached)


async def test_a_spec_change_while_restoring_waits_and_an_api_error_is_retried(
    cluster: Cluster, archived: Archived
) -> None:
    window = await source_schedule(cluster, archived, "pitr-edit")
    into = {"persistentVolumeClaim": {"name": "restore-edit", "storage": "10Gi"}}
    spec = {"backupScheduleRef": {"name": "pitr-edit"}, "target": {"latest": True}, "into": into}
    # The API server fails the first claim creation: the attempt is retried, not lost.
    claims = "post /api/v1/namespaces/default/persistentvolumeclaims"
    # (kmock counts a criterion's requests from the start: the next one is number `done`)
    done = len(list(cluster.emulator[claims]))
    failing = cluster.emulator[claims][done : done + 1] << 500
    await cluster.apply("pointintimerestores", "edit", spec)
    await eventually(lambda: jobs(cluster, "edit-restore-g1"), timeout=60)
    assert len(list(failing)) == 1  # the error was served, and the restore went on
    await eventually(
        lambda: cluster.resource("pointintimerestores", "edit")["status"]["phase"] == "Running"
    )

    # Edited while the Job runs: nothing new starts in the same volume ...
    await cluster.apply("pointintimerestores", "edit", {"target": {"time": window["to"]}})
    waiting = await eventually(
        lambda: (
            (c := condition(cluster.resource("pointintimerestores", "edit"), "Ready"))
            and "starts when it ends" in c["message"]
            and c
        )
    )
    assert waiting["reason"] == "Restoring"
    await asyncio.sleep(2)
    assert not jobs(cluster, "edit-restore-g2")
    # ... until the running one ends; then the new generation runs, into the same claim
    # (made by this restore, so not refused).
    await cluster.patch(
        "batch/v1",
        "jobs",
        "edit-restore-g1",
        {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "Deadline"}]}},
    )
    await eventually(lambda: jobs(cluster, "edit-restore-g2"))
    await eventually(
        lambda: cluster.resource("pointintimerestores", "edit")["status"]["phase"] == "Running"
    )
