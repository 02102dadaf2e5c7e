"""BackupSchedule and PointInTimeRestore: CronJobs and Jobs in the emulator, status from
a real pgBackRest repository and a real PostgreSQL archiving to it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amrutam.backups import status
from amrutam.backups.config import prepare_local
from amrutam.backups.pgbackrest import PgBackRest
from tests.backup.conftest import Archived, archived_server
from tests.operator.conftest import Cluster, condition, eventually

pytestmark = pytest.mark.asyncio(loop_scope="package")


@pytest.fixture(scope="module")
def archived(workdir: Path) -> Iterator[Archived]:
    root = workdir / "operator-backups"
    root.mkdir()
    found = archived_server(root)
    found.repo.backup("full")
    yield found
    found.server.stop("immediate")


def schedule_spec(config_map: str, **overrides: Any) -> dict[str, Any]:
    return {
        "stanza": "amrutam",
        "repo": {"type": "posix", "path": "/pgbackrest"},
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
    await cluster.apply("backupschedules", "main", schedule_spec("pgbr-main"))

    made = await eventually(
        lambda: len(cronjobs(cluster, "main")) == 3 and cronjobs(cluster, "main")
    )
    full = made["main-full"]
    assert full["spec"]["schedule"] == "0 1 * * 0"
    assert full["spec"]["concurrencyPolicy"] == "Forbid"
    assert full["spec"]["startingDeadlineSeconds"] > 0  # one catch-up run after an outage
    job = full["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 7200
    assert job["template"]["spec"]["containers"][0]["command"] == [
        "pgbackrest",
        "--stanza=amrutam",
        "--type=full",
        "backup",
    ]
    assert (
        made["main-incremental"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][
            0
        ]["command"][2]
        == "--type=incr"
    )
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
    assert condition(bks, "Ready")["status"] == "True"
    assert condition(bks, "WALArchiving")["status"] == "True"
    assert condition(bks, "BackupFresh")["status"] == "True"  # nothing was due yet

    # A changed schedule is patched, a removed one deleted.
    changed = schedule_spec("pgbr-main")
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
    await cluster.apply("backupschedules", "wal", schedule_spec("pgbr-wal"))
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
        assert bks["status"]["lastBackups"]["full"]  # the last backup still looks fine
        await eventually(
            lambda: any(e["reason"] == "WALArchivingFailing" for e in cluster.events("wal"))
        )
    finally:
        archived.sql("ALTER SYSTEM RESET archive_command")
        archived.sql("SELECT pg_reload_conf()")
    archived.repo.check()
    await eventually(
        lambda: (
            condition(cluster.resource("backupschedules", "wal"), "WALArchiving")["status"]
            == "True"
        ),
        timeout=60,
    )


async def test_a_schedule_that_never_ran_is_overdue(cluster: Cluster, archived: Archived) -> None:
    # A second, empty repository for the same database: no backup ever reached it.
    config = prepare_local(
        archived.root / "empty-repo", "amrutam", archived.server.datadir, archived.server.port
    )
    PgBackRest(config, "amrutam").stanza_create()
    await repo_config(cluster, "pgbr-empty", config)
    await cluster.apply("backupschedules", "stale", schedule_spec("pgbr-empty"))
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
    assert cluster.resource("backupschedules", "stale")["status"].get("recoveryWindow") is None


async def test_backup_now_annotation_runs_one_backup_per_value(
    cluster: Cluster, archived: Archived
) -> None:
    await repo_config(cluster, "pgbr-now", archived.repo.config)
    await cluster.apply("backupschedules", "now", schedule_spec("pgbr-now", schedules={}))
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
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][2] == "--type=diff"
    await eventually(
        lambda: (
            cluster.resource("backupschedules", "now")["status"].get("oneOffBackup")
            == "2026-11-28T12:00"
        )
    )
    await asyncio.sleep(1)
    assert len(jobs(cluster, "now-now-")) == 1  # the same value never runs twice


async def test_restore_outside_the_window_is_refused_before_any_work(
    cluster: Cluster, archived: Archived
) -> None:
    await repo_config(cluster, "pgbr-pitr", archived.repo.config)
    await cluster.apply("backupschedules", "pitr-src", schedule_spec("pgbr-pitr"))
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


async def test_restore_runs_a_job_into_a_new_volume_and_can_be_retried(
    cluster: Cluster, archived: Archived
) -> None:
    await repo_config(cluster, "pgbr-pitr2", archived.repo.config)
    await cluster.apply("backupschedules", "pitr-src2", schedule_spec("pgbr-pitr2"))
    window = await eventually(
        lambda: cluster.resource("backupschedules", "pitr-src2")["status"].get("recoveryWindow")
    )
    into = {"persistentVolumeClaim": {"name": "restore-new", "storage": "10Gi"}}
    await cluster.apply(
        "pointintimerestores",
        "ok",
        {
            "backupScheduleRef": {"name": "pitr-src2"},
            "target": {"time": window["to"]},
            "into": into,
        },
    )
    job = await eventually(lambda: jobs(cluster, "ok-restore-g1").get("ok-restore-g1"))
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-1] == "restore"
    assert "--type=time" in command
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "restore", "persistentVolumeClaim": {"claimName": "restore-new"}} in volumes
    assert (
        cluster.get("v1", "persistentvolumeclaims", "restore-new")["spec"]["resources"]["requests"][
            "storage"
        ]
        == "10Gi"
    )
    # (the status is patched after the handler returns, so just after the Job)
    await eventually(
        lambda: cluster.resource("pointintimerestores", "ok")["status"]["phase"] == "Running"
    )

    # The Job fails (the emulator runs no controllers: we write its status) ...
    await cluster.patch(
        "batch/v1",
        "jobs",
        "ok-restore-g1",
        {
            "status": {
                "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
                ]
            }
        },
    )
    await eventually(
        lambda: cluster.resource("pointintimerestores", "ok")["status"]["phase"] == "Failed"
    )
    # ... and a changed spec is a new attempt with a new Job, which succeeds.
    await cluster.apply("pointintimerestores", "ok", {"target": {"latest": True}})
    await eventually(lambda: jobs(cluster, "ok-restore-g2"))
    await cluster.patch(
        "batch/v1",
        "jobs",
        "ok-restore-g2",
        {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
    )
    done = await eventually(
        lambda: (
            (r := cluster.resource("pointintimerestores", "ok"))["status"]["phase"] == "Succeeded"
            and r
        )
    )
    assert done["status"]["restoredTo"] == "latest"
    assert condition(done, "Ready")["status"] == "True"
