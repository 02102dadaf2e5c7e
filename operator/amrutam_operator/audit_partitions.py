"""AuditPartitionPolicy: keep the audit trail's partitions ahead of time.

The work itself is the core's partition maintenance (the same code the CLI and the
daily beat task run); this handler supplies the policy's settings, the database from its
secret, and reports the outcome as status conditions and Events.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import kopf

from amrutam.audit import partitions
from amrutam.infra.db import libpq_dsn
from amrutam_operator import conditions, kube, metrics, turns
from amrutam_operator.config import GROUP, VERSION, settings

KIND = "AuditPartitionPolicy"
CONNECT_TIMEOUT_S = 10
CONTENDED_RETRY_S = 60  # a step that gave way to a lock is tried again this soon


def _due(spec: kopf.Spec, status: kopf.Status, generation: int | None) -> bool:
    """A changed spec, a failed last attempt, checkInterval since the last success, or a
    minute since a run that gave way to a lock or withheld retention (a skewed clock)."""
    if status.get("observedGeneration") != generation:
        return True
    last = status.get("lastMaintenance") or {}
    if last.get("contended") or last.get("refused"):
        every = CONTENDED_RETRY_S
    elif not conditions.is_true(status.get("conditions"), "Ready"):
        return True
    else:
        every = int(spec.get("checkInterval", 3600))
    if not last.get("time"):
        return True
    elapsed = datetime.now(UTC) - datetime.fromisoformat(last["time"])
    return elapsed >= timedelta(seconds=every)


async def last_full_backup(namespace: str, retention: Mapping[str, Any]) -> datetime | None:
    """When the referenced BackupSchedule's newest full backup finished (drop's guard)."""
    ref = retention.get("backupScheduleRef")
    if not ref:
        return None
    schedule = await kube.custom_object(namespace, "backupschedules", ref["name"])
    if schedule is None:
        raise kube.MissingReference(f"backupschedule {ref['name']!r} not found")
    full = ((schedule.get("status") or {}).get("lastBackups") or {}).get("full") or {}
    finished = full.get("finishedAt")
    return datetime.fromisoformat(finished.replace("Z", "+00:00")) if finished else None


async def _maintain(
    dsn: str, spec: kopf.Spec, namespace: str
) -> tuple[partitions.Report, dict[str, Any]]:
    retention = spec.get("retention") or {}
    table = spec.get("table", "audit_logs")
    action = retention.get("action", "detach")
    backed_up_at = await last_full_backup(namespace, retention) if action == "drop" else None
    conn = await asyncpg.connect(libpq_dsn(dsn), timeout=CONNECT_TIMEOUT_S)
    try:
        report = await partitions.maintain(
            conn,
            table=table,
            interval=partitions.INTERVALS[spec.get("interval", "monthly")],
            premake=int(spec.get("premake", 3)),
            keep=retention.get("keep"),
            action=action,
            drop_after=timedelta(days=int(retention.get("dropAfterDays", 30))),
            max_drops=int(retention.get("maxDropsPerRun", 1)),
            backed_up_at=backed_up_at,
        )
        return report, await partitions.status(conn, table)
    finally:
        await conn.close()


def _ready(report: partitions.Report) -> dict[str, Any]:
    """Gave way to a lock: not a failure (audit writes went on), retried soon. A clock
    that disagrees with the database's: retention withheld until it is fixed."""
    if report.refused:
        return conditions.condition("Ready", False, "ClockSkew", report.refused)
    if report.contended:
        waiting = ", ".join(report.contended)
        return conditions.condition("Ready", True, "Contended", f"gave way to locks: {waiting}")
    return conditions.condition("Ready", True, "Maintained", "maintenance succeeded")


def _horizon_met(spec: kopf.Spec, horizon: str | None) -> tuple[bool, str]:
    interval = partitions.INTERVALS[spec.get("interval", "monthly")]
    needed = interval.shift(interval.floor(datetime.now(UTC)), int(spec.get("premake", 3)) + 1)
    if horizon is None:
        return False, "no partitions"
    ok = datetime.fromisoformat(horizon) >= needed
    return ok, f"partitions reach {horizon}; {needed.isoformat()} needed"


@kopf.timer(GROUP, VERSION, "auditpartitionpolicies", interval=settings().tick_s)
@turns.poll
async def reconcile(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    namespace: str | None,
    name: str,
    **kwargs: Any,
) -> None:
    generation = meta.get("generation")
    if spec.get("suspend"):
        # Said in the status (kubernetes review D13): nothing keeps the horizon meanwhile.
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = conditions.merged(
            status.get("conditions"),
            [conditions.condition("Ready", True, "Suspended", "spec.suspend: no maintenance")],
            generation,
        )
        return
    if not _due(spec, status, generation):
        return
    try:
        dsn = await kube.secret_value(namespace or "default", spec["databaseSecretRef"])
        report, state = await _maintain(dsn, spec, namespace or "default")
    except (kube.MissingReference, OSError, asyncpg.PostgresError, ValueError) as exc:
        reason = "SecretUnusable" if isinstance(exc, kube.MissingReference) else "MaintenanceFailed"
        conditions.fail(
            patch,
            status,
            body,
            memo,
            kind=KIND,
            reason=reason,
            exc=exc,
            generation=generation,
            retry=int(kwargs.get("retry", 0)),
        )
    conditions.recovered(memo)

    horizon_ok, horizon_msg = _horizon_met(spec, state["horizon"])
    default_rows = state["defaultPartitionRows"]
    patch.status.update(
        {
            **state,
            "observedGeneration": generation,
            "lastMaintenance": report.as_dict(),
            "conditions": conditions.merged(
                status.get("conditions"),
                [
                    _ready(report),
                    conditions.condition(
                        "HorizonMet", horizon_ok, "Ahead" if horizon_ok else "Behind", horizon_msg
                    ),
                    conditions.condition(
                        "DefaultPartitionEmpty",
                        default_rows == 0,
                        "Empty" if default_rows == 0 else "RowsInDefault",
                        f"{default_rows} rows in the default partition",
                    ),
                ],
                generation,
            ),
        }
    )
    if report.changed:
        kopf.info(
            body,
            reason="PartitionsMaintained",
            message=(
                f"created {len(report.created)}, detached {len(report.detached)}, "
                f"dropped {len(report.dropped)}, moved {report.moved_from_default} rows, "
                f"{len(report.awaiting_drop)} detached awaiting drop"
            ),
        )
    metrics.succeeded(KIND, namespace, name)
