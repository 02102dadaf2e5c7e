"""BackupSchedule's Ready: the conjunction of BackupFresh, WALArchiving, WindowMet and
RestoreVerified, each False for its own failure and Unknown when it could not be read.
(The same conditions against a real repository and PostgreSQL: test_backups.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from amrutam_operator import conditions, metrics
from amrutam_operator.backups import assess
from prometheus_client import REGISTRY

from amrutam.backups import status

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
MONTH_AGO = NOW - timedelta(days=30)
SPEC: dict[str, Any] = {
    "schedules": {"full": "0 1 * * 0", "incremental": "0 */4 * * *"},
    "retention": {"pitrWindowDays": 7},
    "jobDeadlineSeconds": 3600,
    "walStallSeconds": 900,
    "databaseSecretRef": {"name": "db"},
}
DRILL = {"schedule": "0 5 * * 0", "deadlineSeconds": 3600, "signingKeySecretRef": {}}


def backups(*ages_h: float) -> list[status.Backup]:
    """Full backups that finished this many hours ago (the oldest opens the window)."""
    return [
        status.Backup(
            f"F{i}", "full", NOW - timedelta(hours=h, minutes=5), NOW - timedelta(hours=h), 1, 1
        )
        for i, h in enumerate(ages_h)
    ]


def archiver(**changes: Any) -> status.Archiver:
    healthy: dict[str, Any] = {
        "archived": 100,
        "failed": 0,
        "last_archived": NOW - timedelta(seconds=30),
        "last_failed": None,
        "last_failed_wal": None,
        "last_archived_wal": "000000010000000A000000FE",
        "current_wal": "000000010000000A000000FF",
        "now": NOW,
    }
    return status.Archiver(**{**healthy, **changes})


def ready(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return conditions.summary(parts, "Recoverable", "")


def by_type(parts: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {p["type"]: (p["status"], p["reason"]) for p in parts}


GOOD = backups(8 * 24, 3)  # a window of eight days, the last backup three hours ago


def test_all_good_is_ready() -> None:
    parts = assess(SPEC, GOOD, archiver(), None, NOW, MONTH_AGO)
    assert by_type(parts) == {
        "BackupFresh": ("True", "Fresh"),
        "WindowMet": ("True", "Met"),
        "WALArchiving": ("True", "Archiving"),
    }
    assert ready(parts)["status"] == "True"


def test_an_overdue_backup_makes_ready_false() -> None:
    parts = assess(SPEC, backups(8 * 24, 9), archiver(), None, NOW, MONTH_AGO)
    assert ready(parts)["status"] == "False"
    assert ready(parts)["reason"] == "Overdue"  # the 08:00 incremental never ran


def test_failing_archiving_makes_ready_false() -> None:
    failing = archiver(failed=3, last_failed=NOW - timedelta(seconds=5), last_failed_wal="X")
    parts = assess(SPEC, GOOD, failing, None, NOW, MONTH_AGO)
    assert (ready(parts)["status"], ready(parts)["reason"]) == ("False", "ArchiveFailing")


def test_a_stalled_archiver_makes_ready_false_though_nothing_failed() -> None:
    stalled = archiver(
        last_archived=NOW - timedelta(hours=1),
        last_archived_wal="000000010000000A000000F0",  # 15 finished segments wait
    )
    parts = assess(SPEC, GOOD, stalled, None, NOW, MONTH_AGO)
    assert by_type(parts)["WALArchiving"] == ("False", "ArchiveStalled")
    assert ready(parts)["reason"] == "ArchiveStalled"
    # The last file archived may be a backup's history file: it names its segment.
    after_backup = archiver(
        last_archived=NOW - timedelta(hours=1),
        last_archived_wal="000000010000000A000000F0.00000028.backup",
    )
    assert by_type(assess(SPEC, GOOD, after_backup, None, NOW, MONTH_AGO))["WALArchiving"] == (
        "False",
        "ArchiveStalled",
    )
    # A quiet database (nothing waiting) is not a stalled one, however old the last archive.
    quiet = archiver(last_archived=NOW - timedelta(hours=5), current_wal="000000010000000A000000FF")
    quiet_parts = assess(SPEC, GOOD, quiet, None, NOW, MONTH_AGO)
    assert by_type(quiet_parts)["WALArchiving"] == ("True", "Archiving")


def test_a_window_shorter_than_promised_or_none_makes_ready_false_unless_still_filling() -> None:
    short = backups(2 * 24, 3)
    parts = assess(SPEC, short, archiver(), None, NOW, MONTH_AGO)
    assert by_type(parts)["WindowMet"] == ("False", "WindowShort")
    assert ready(parts)["status"] == "False"
    new = assess(SPEC, short, archiver(), None, NOW, NOW - timedelta(days=2))
    assert by_type(new)["WindowMet"] == ("True", "Filling")
    # Filling needs a backup to fill from: with none, nothing can be restored.
    empty = assess(SPEC, [], archiver(), None, NOW, NOW - timedelta(hours=1))
    assert by_type(empty)["WindowMet"] == ("False", "NoBackup")
    assert ready(empty)["status"] == "False"


def test_drills_verify_recoverability() -> None:
    spec = {**SPEC, "drill": DRILL}
    last_sunday_5 = datetime(2026, 11, 29, 5, tzinfo=UTC)
    ok = {"result": "Succeeded", "succeededAt": status.iso(last_sunday_5 + timedelta(minutes=20))}
    assert by_type(assess(spec, GOOD, archiver(), ok, NOW, MONTH_AGO))["RestoreVerified"] == (
        "True",
        "Verified",
    )
    failed = {**ok, "result": "Failed", "message": "the restore did not finish"}
    parts = assess(spec, GOOD, archiver(), failed, NOW, MONTH_AGO)
    assert (ready(parts)["status"], ready(parts)["reason"]) == ("False", "DrillFailed")
    stale = {"result": "Succeeded", "succeededAt": "2026-11-15T05:20:00Z"}  # two weeks old
    parts = assess(spec, GOOD, archiver(), stale, NOW, MONTH_AGO)
    assert (ready(parts)["status"], ready(parts)["reason"]) == ("False", "DrillOverdue")
    fresh_install = assess(spec, GOOD, archiver(), None, NOW, NOW - timedelta(hours=2))
    assert by_type(fresh_install)["RestoreVerified"] == ("True", "NotYetDue")


def test_what_was_not_read_is_unknown_never_an_old_true() -> None:
    parts = assess(SPEC, None, OSError("connection refused"), None, NOW, MONTH_AGO)
    assert by_type(parts) == {
        "BackupFresh": ("Unknown", "RepositoryUnreadable"),
        "WindowMet": ("Unknown", "RepositoryUnreadable"),
        "WALArchiving": ("Unknown", "DatabaseUnreadable"),
    }
    assert ready(parts)["status"] == "Unknown"
    # N10: Unknown is a value of its own, which the Ready alert sees; never an old True.
    metrics.condition("ns", "bks", "Ready", "True")
    metrics.condition("ns", "bks", "Ready", "Unknown")
    labels = {"namespace": "ns", "name": "bks", "condition": "Ready"}
    values = {
        status: REGISTRY.get_sample_value("amrutam_backup_condition", {**labels, "status": status})
        for status in ("True", "False", "Unknown")
    }
    assert values == {"True": 0, "False": 0, "Unknown": 1}
    # A standby copy drops what it had: the active copy's values alone are the truth.
    metrics.stand_by()
    assert (
        REGISTRY.get_sample_value("amrutam_backup_condition", {**labels, "status": "Unknown"})
        is None
    )


def test_a_deleted_schedule_leaves_no_series_behind() -> None:
    metrics.condition("ns", "gone", "Ready", "True")
    metrics.BACKUP_FINISHED.labels("ns", "gone", "full").set(1)
    metrics.succeeded("BackupSchedule", "ns", "gone")
    metrics.succeeded("AuditPartitionPolicy", "ns", "gone")  # another kind, same name
    metrics.forget("BackupSchedule", "ns", "gone")
    assert (
        REGISTRY.get_sample_value(
            "amrutam_backup_condition",
            {"namespace": "ns", "name": "gone", "condition": "Ready", "status": "True"},
        )
        is None
    )
    assert (
        REGISTRY.get_sample_value(
            "amrutam_backup_last_finished_timestamp_seconds",
            {"namespace": "ns", "name": "gone", "type": "full"},
        )
        is None
    )
    success = "amrutam_operator_last_success_timestamp_seconds"
    assert (
        REGISTRY.get_sample_value(
            success, {"kind": "BackupSchedule", "namespace": "ns", "name": "gone"}
        )
        is None
    )
    assert REGISTRY.get_sample_value(
        success, {"kind": "AuditPartitionPolicy", "namespace": "ns", "name": "gone"}
    )
