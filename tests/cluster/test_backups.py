"""Backups of the release's PostgreSQL in the real cluster, to an S3-compatible store
outside it under a private CA (conftest.py: object_store), with the chart's values."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.cluster.kube import (
    FIGURES,
    NAMESPACE,
    RELEASE,
    condition,
    exists,
    get,
    kubectl,
    printed,
    succeeded,
    wait_until,
)

SCHEDULE = "platform.amrutam.io/backup-schedule"
pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("release"), pytest.mark.timeout(900)]


def test_a_new_installation_backs_up_at_once_and_the_schedule_becomes_ready_with_a_window(
    first_backup: dict[str, Any],
) -> None:
    """N1: the operator's own `pgbackrest info` failed with the chart's TLS settings, so no
    BackupSchedule was ever Ready. Here it reads the store through its private CA, finds
    it empty, and takes the first full backup itself (`helm install --wait` waits for it:
    Helm reads the schedule's Ready condition)."""
    assert first_backup["metadata"]["labels"]["platform.amrutam.io/backup-type"] == "full"
    ready = wait_until(
        lambda: condition("backupschedule", RELEASE, "Ready").get("status") == "True" or None,
        "the BackupSchedule reports Ready",
        timeout=300,
    )
    assert ready, condition("backupschedule", RELEASE, "Ready")
    status = get("backupschedule", RELEASE)["status"]
    window = status["recoveryWindow"]
    assert window["from"] <= window["to"], window
    assert status["lastBackups"]["full"]["finishedAt"], status["lastBackups"]
    # WAL reaches the store from the database's own archive_command, through the CA.
    wal = wait_until(
        lambda: condition("backupschedule", RELEASE, "WALArchiving").get("status") == "True",
        "WAL archiving reported healthy",
        timeout=300,
    )
    assert wal
    (row,) = printed("backupschedules")
    assert row["STANZA"] == "amrutam", row
    assert (row["READY"], row["WAL"]) == ("True", "True"), row
    for column in ("LAST FULL", "LAST BACKUP", "WINDOW FROM", "WINDOW TO"):
        assert row[column] not in ("", "<none>"), (column, row)


def test_the_operators_jobs_get_the_charts_pull_secrets_and_placement(
    first_backup: dict[str, Any],
) -> None:
    """N6: Jobs the operator made had none of the chart's pull secrets, node selectors or
    tolerations, so on a private registry or a tainted pool they could never start."""
    pod = first_backup["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "amrutam-registry"}]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "amrutam-node"}
    assert {"key": "amrutam.io/backups", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    (ran,) = get("pods", **{"job-name": first_backup["metadata"]["name"]})
    assert ran["spec"]["nodeName"] == "amrutam-node"
    assert ran["status"]["phase"] == "Succeeded"


def test_a_drill_restores_boots_probes_and_reports_then_leaves_no_copy(
    first_backup: dict[str, Any],
) -> None:
    """N2: the probe could not write its report into the folder the restore container
    made, so every drill ran to its deadline with a copy of the data up, unverified."""
    kubectl("create", "job", "drill-now", "--from", f"cronjob/{RELEASE}-drill", "-n", NAMESPACE)
    started = time.monotonic()
    wait_until(lambda: succeeded("drill-now"), "the drill Job succeeds", timeout=600)
    took = time.monotonic() - started
    last = wait_until(
        lambda: (
            (get("backupschedule", RELEASE)["status"].get("lastDrill") or {}).get("job")
            == "drill-now"
            and get("backupschedule", RELEASE)["status"]["lastDrill"]
        ),
        "the BackupSchedule reports the drill",
        timeout=180,
    )
    assert last["result"] == "Succeeded", last
    verified = condition("backupschedule", RELEASE, "RestoreVerified")
    assert (verified["status"], verified["reason"]) == ("True", "Verified"), verified
    # Once reported, the operator deletes the Job: its pod, and with it the scratch volume
    # (an ephemeral claim) holding a copy of the patient data, are gone.
    wait_until(
        lambda: (
            not exists("job", "drill-now")
            and not get("pvc", **{"platform.amrutam.io/drill": RELEASE})
        ),
        "the drill's Job and scratch claim are deleted",
    )
    FIGURES["drill Job s"] = round(took)
    FIGURES["drill restore and boot s"] = last["recoverySeconds"]


def test_a_backup_asked_for_runs_once_as_a_job_of_its_type(first_backup: dict[str, Any]) -> None:
    """The runbook's one-off backup before a risky change: the backup-now annotation."""
    kubectl(
        "annotate", "-n", NAMESPACE, "backupschedule", RELEASE, "--overwrite",
        "platform.amrutam.io/backup-type=incr",
        f"platform.amrutam.io/backup-now={datetime.now(UTC).isoformat()}",
    )  # fmt: skip
    (job,) = wait_until(
        lambda: [j for j in get("jobs", **{SCHEDULE: RELEASE}) if "-now-" in j["metadata"]["name"]],
        "the operator creates the backup Job",
        timeout=120,
    )
    name = job["metadata"]["name"]
    assert job["metadata"]["labels"]["platform.amrutam.io/backup-type"] == "incremental"
    wait_until(lambda: succeeded(name), f"{name} succeeds", timeout=600)
    wait_until(
        lambda: (
            "incremental" in (get("backupschedule", RELEASE)["status"].get("lastBackups") or {})
        ),
        "the BackupSchedule lists the incremental backup",
        timeout=180,
    )
