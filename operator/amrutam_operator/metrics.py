"""The operator's own Prometheus metrics."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

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
