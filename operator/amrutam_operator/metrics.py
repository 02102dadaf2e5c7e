"""The operator's own Prometheus metrics."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge

from amrutam.backups.status import Archiver, Backup, Window, latest_by_kind

RECONCILIATIONS = Counter(
    "amrutam_operator_reconciliations_total",
    "Reconciliations by resource kind and result",
    ["kind", "result"],
)
LAST_SUCCESS = Gauge(
    "amrutam_operator_last_success_timestamp_seconds",
    "When each resource was last reconciled successfully",
    ["kind", "namespace", "name"],
)


def succeeded(kind: str, namespace: str | None, name: str | None) -> None:
    RECONCILIATIONS.labels(kind, "success").inc()
    LAST_SUCCESS.labels(kind, namespace or "", name or "").set(time.time())


def failed(kind: str) -> None:
    RECONCILIATIONS.labels(kind, "failure").inc()


BACKUP_FINISHED = Gauge(
    "amrutam_backup_last_finished_timestamp_seconds",
    "When the newest backup of each type in a BackupSchedule's repository finished",
    ["namespace", "name", "type"],
)
WAL_ARCHIVING = Gauge(
    "amrutam_backup_wal_archiving_ok",
    "1 while PostgreSQL archives WAL without failures, 0 when it fails",
    ["namespace", "name"],
)
# As kube-state-metrics exports conditions: one series per status, 1 on the current one,
# so Unknown is a value an alert can see (an absent series pages nobody).
BACKUP_CONDITION = Gauge(
    "amrutam_backup_condition",
    "1 on a BackupSchedule condition's current status (True, False or Unknown), else 0",
    ["namespace", "name", "condition", "status"],
)
STATUSES = ("True", "False", "Unknown")
RECOVERY_WINDOW = Gauge(
    "amrutam_backup_recovery_window_seconds",
    "The length of the window a BackupSchedule's repository can restore to",
    ["namespace", "name"],
)
DRILL_SUCCEEDED = Gauge(
    "amrutam_backup_drill_last_success_timestamp_seconds",
    "When the last restore drill of a BackupSchedule succeeded",
    ["namespace", "name"],
)
BACKUP_SERIES = (BACKUP_CONDITION, RECOVERY_WINDOW, DRILL_SUCCEEDED, WAL_ARCHIVING, BACKUP_FINISHED)


def condition(namespace: str, name: str, type_: str, status: str) -> None:
    for each in STATUSES:
        BACKUP_CONDITION.labels(namespace, name, type_, each).set(1 if each == status else 0)


def stand_by() -> None:
    """A standby copy reconciles nothing: the values it had would outlive the truth and
    outvote the active copy in the alerts' aggregations."""
    for gauge in BACKUP_SERIES:
        gauge.clear()


def backup_figures(
    namespace: str,
    name: str,
    found: list[Backup] | None,
    window: Window | None,
    archiver: Archiver | Exception | None,
    drill: Mapping[str, Any] | None,
) -> None:
    for kind, backup in latest_by_kind(found or []).items():
        BACKUP_FINISHED.labels(namespace, name, kind).set(backup.finished.timestamp())
    if window is not None:
        RECOVERY_WINDOW.labels(namespace, name).set(window.length.total_seconds())
    if isinstance(archiver, Archiver):
        WAL_ARCHIVING.labels(namespace, name).set(1 if archiver.healthy else 0)
    elif archiver is not None:  # not read: no value rather than an old one
        with contextlib.suppress(KeyError):
            WAL_ARCHIVING.remove(namespace, name)
    if drill and drill.get("succeededAt"):
        moment = datetime.fromisoformat(drill["succeededAt"].replace("Z", "+00:00"))
        DRILL_SUCCEEDED.labels(namespace, name).set(moment.timestamp())


def forget(kind: str, namespace: str, name: str) -> None:
    """Drop every series of a deleted resource, so no alert fires for what is gone."""
    wanted = {"kind": kind, "namespace": namespace, "name": name}
    series = [LAST_SUCCESS, *(BACKUP_SERIES if kind == "BackupSchedule" else ())]
    for gauge in series:
        # (a sample's labels are in the gauge's label order, the order remove() takes)
        for sample in {tuple(s.labels.items()) for m in gauge.collect() for s in m.samples}:
            labels = dict(sample)
            if all(labels.get(k, v) == v for k, v in wanted.items()):
                gauge.remove(*labels.values())
