"""BackupSchedule: pgBackRest CronJobs, restore drills, and an honest view of what can
be restored.

The operator owns one CronJob per schedule, and one for the drill (owner references:
deleting the schedule removes them). Status comes from the repository itself
(``pgbackrest info``, run here with the schedule's repository), from PostgreSQL's
``pg_stat_archiver`` and clock, and from the drills' own reports. ``Ready`` is the
conjunction of ``BackupFresh``, ``WALArchiving``, ``WindowMet`` and (with a drill)
``RestoreVerified``; a condition that could not be read this time is ``Unknown``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import kopf
from croniter import croniter
from kubernetes.client.exceptions import ApiException

from amrutam.backups import status as repo_status
from amrutam.backups.pgbackrest import BackupError
from amrutam_operator import conditions, drills, kube, metrics, repository, turns
from amrutam_operator.config import GROUP, VERSION, settings
from amrutam_operator.drills import job_kind
from amrutam_operator.manifests import (
    LABEL,
    PGBACKREST_TYPE,
    TYPE_LABEL,
    backup_job_spec,
    cronjob,
)

KIND = "BackupSchedule"
BACKUP_NOW = "platform.amrutam.io/backup-now"
BACKUP_TYPE = "platform.amrutam.io/backup-type"
DIGEST = "platform.amrutam.io/spec-digest"
# A backup of a type satisfies its own schedule and every schedule below it.
SATISFIES = {
    "full": {"full"},
    "differential": {"full", "differential"},
    "incremental": {"full", "differential", "incremental"},
}


async def reconcile_cronjobs(
    body: kopf.Body, spec: Mapping[str, Any], namespace: str, name: str
) -> list[dict[str, str]]:
    schedules = dict(spec.get("schedules") or {})
    if spec.get("drill"):
        schedules["drill"] = spec["drill"]["schedule"]
    wanted = {
        kind: cronjob(name, spec, kind, schedule)
        for kind, schedule in schedules.items()
        if schedule
    }
    existing = {c["metadata"]["name"]: c for c in await kube.cronjobs(namespace, {LABEL: name})}
    for kind, obj in wanted.items():
        kopf.adopt(obj, owner=body)
        # What we last wrote is recorded as a digest: patch only when it changes.
        digest = hashlib.sha256(json.dumps(obj["spec"], sort_keys=True).encode()).hexdigest()
        obj["metadata"].setdefault("annotations", {})[DIGEST] = digest[:16]
        current = existing.pop(obj["metadata"]["name"], None)
        if current is None:
            await kube.create_cronjob(namespace, obj)
            kopf.info(body, reason="CronJobCreated", message=f"{obj['metadata']['name']}: {kind}")
        elif (current["metadata"].get("annotations") or {}).get(DIGEST) != digest[:16]:
            await kube.patch_cronjob(namespace, obj["metadata"]["name"], obj)
            kopf.info(body, reason="CronJobUpdated", message=f"{obj['metadata']['name']}")
    for stale in existing:
        await kube.delete_cronjob(namespace, stale)
        kopf.info(body, reason="CronJobDeleted", message=stale)
    return [
        {"type": kind, "name": obj["metadata"]["name"], "schedule": obj["spec"]["schedule"]}
        for kind, obj in wanted.items()
    ]


async def backup_now(
    body: kopf.Body,
    spec: Mapping[str, Any],
    meta: kopf.Meta,
    status: kopf.Status,
    namespace: str,
    name: str,
) -> str | None:
    """The one-off backup the annotation asks for, once per new annotation value."""
    annotations: Mapping[str, str] = meta.get("annotations", {})
    value = annotations.get(BACKUP_NOW)
    if not value or value == status.get("oneOffBackup"):
        return None
    asked = annotations.get(BACKUP_TYPE, "full")
    kind = {"diff": "differential", "incr": "incremental"}.get(asked, asked)
    if kind not in PGBACKREST_TYPE:
        kopf.warn(body, reason="BadBackupType", message=f"{asked!r}: full, diff or incr")
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    await _one_off(body, spec, namespace, name, f"{name}-now-{digest}", kind)
    return value


async def first_backup(body: kopf.Body, spec: Mapping[str, Any], namespace: str, name: str) -> None:
    """An empty repository (a new installation) restores nothing: its first full backup
    runs now, not at the first scheduled run up to a week away. Once: a failed one stays
    for `kubectl logs` (backup-now retries), until its Job's time to live ends."""
    await _one_off(body, spec, namespace, name, f"{name}-first", "full")


async def _one_off(
    body: kopf.Body, spec: Mapping[str, Any], namespace: str, name: str, job_name: str, kind: str
) -> None:
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "labels": {LABEL: name, TYPE_LABEL: kind}},
        "spec": backup_job_spec(name, spec, kind),
    }
    kopf.adopt(job, owner=body)
    if await kube.create_job(namespace, job):
        kopf.info(body, reason="BackupRequested", message=f"{kind} backup {job_name}")


def freshness(
    schedules: Mapping[str, str],
    found: list[repo_status.Backup],
    now: datetime,
    since: datetime,
    grace: timedelta,
) -> tuple[bool, str]:
    """Whether every schedule's most recent due run left a backup (of its type or a
    bigger one). A run is due once its time plus the job deadline has passed."""
    late = []
    for kind, schedule in schedules.items():
        if not schedule:
            continue
        due: datetime = croniter(schedule, now - grace).get_prev(datetime)
        if due < since:
            continue  # nothing was due yet since the schedule was made
        done = [b.finished for b in found if b.kind in SATISFIES[kind]]
        if not done or max(done) < due:
            late.append(f"{kind} due {repo_status.iso(due)}")
    if late:
        return False, "overdue: " + "; ".join(late)
    return True, "every scheduled backup ran"


def _last_failure(jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    failures = []
    for job in jobs:
        if job_kind(job) == "drill":
            continue  # drills report in lastDrill
        for cond in (job.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Failed" and cond.get("status") == "True":
                failures.append(
                    {
                        "type": job_kind(job),
                        "time": cond.get("lastTransitionTime"),
                        "message": cond.get("message") or cond.get("reason") or "job failed",
                    }
                )
    return max(failures, key=lambda f: f["time"] or "") if failures else None


async def _report_skips(body: kopf.Body, memo: kopf.Memo, namespace: str, name: str) -> None:
    """One Event per backup that found another one of the stanza running and stood down."""
    seen: set[str] = memo.setdefault("skipped", set())
    for pod in await kube.pods(namespace, {LABEL: name}):
        job = pod["metadata"].get("labels", {}).get("job-name", "")
        message = kube.termination_messages([pod]).get("pgbackrest", "")
        if message.startswith("skipped") and job not in seen:
            seen.add(job)
            kopf.warn(body, reason="BackupSkipped", message=f"{job}: {message}")


def _due(memo: kopf.Memo, meta: kopf.Meta, status: kopf.Status) -> bool:
    if status.get("observedGeneration") != meta.get("generation"):
        return True
    if meta.get("annotations", {}).get(BACKUP_NOW) != status.get("oneOffBackup"):
        return True
    last = memo.get("refreshed")
    return last is None or time.monotonic() - last >= settings().backup_status_interval_s


def assess(
    spec: Mapping[str, Any],
    found: list[repo_status.Backup] | None,
    archiver: repo_status.Archiver | Exception | None,
    drill: Mapping[str, Any] | None,
    now: datetime,
    created: datetime,
) -> list[dict[str, Any]]:
    """The conditions, from what could be read this time (None or an exception: not read)."""
    grace = timedelta(seconds=int(spec.get("jobDeadlineSeconds", 7200)))
    days = timedelta(days=int((spec.get("retention") or {}).get("pitrWindowDays", 7)))
    result = []
    if found is None:
        result += [
            conditions.unknown("BackupFresh", "RepositoryUnreadable"),
            conditions.unknown("WindowMet", "RepositoryUnreadable"),
        ]
    else:
        fresh, fresh_msg = freshness(spec.get("schedules") or {}, found, now, created, grace)
        result.append(
            conditions.condition("BackupFresh", fresh, "Fresh" if fresh else "Overdue", fresh_msg)
        )
        last = archiver.last_archived if isinstance(archiver, repo_status.Archiver) else None
        window = repo_status.window(found, last)
        span = window.short() if window else "nothing"
        if window is None:
            # Nothing to restore yet: a new installation is not recoverable until its
            # first backup (docs/backup-restore.md: backup-now after installing).
            result.append(conditions.condition("WindowMet", False, "NoBackup", "no backup yet"))
        elif window.length >= days:
            result.append(conditions.condition("WindowMet", True, "Met", f"{span} ≥ {days.days}d"))
        elif now - created < days:
            result.append(
                conditions.condition("WindowMet", True, "Filling", f"{span} of {days.days}d so far")
            )
        else:
            result.append(
                conditions.condition("WindowMet", False, "WindowShort", f"{span} < {days.days}d")
            )
    result.append(_wal(archiver, spec))
    if spec.get("drill"):
        result.append(drills.verified(spec["drill"], drill, now, created))
    return result


def _wal(archiver: repo_status.Archiver | Exception | None, spec: Mapping[str, Any]) -> Any:
    if archiver is None:
        return conditions.unknown(
            "WALArchiving", "NotConfigured", "no databaseSecretRef: pg_stat_archiver not read"
        )
    if isinstance(archiver, Exception):
        return conditions.unknown("WALArchiving", "DatabaseUnreadable", f"{archiver}")
    if not archiver.healthy:
        when = archiver.last_failed.isoformat() if archiver.last_failed else "?"
        return conditions.condition(
            "WALArchiving",
            False,
            "ArchiveFailing",
            f"{archiver.failed} failures, last {archiver.last_failed_wal} at {when}",
        )
    after = timedelta(seconds=int(spec.get("walStallSeconds", 900)))
    if archiver.stalled(after):
        last = repo_status.iso(archiver.last_archived) if archiver.last_archived else "never"
        return conditions.condition(
            "WALArchiving",
            False,
            "ArchiveStalled",
            f"{archiver.waiting} segments wait; last archived {last}, no failure reported",
        )
    return conditions.condition(
        "WALArchiving", True, "Archiving", f"{archiver.archived} segments archived"
    )


@kopf.timer(GROUP, VERSION, "backupschedules", interval=settings().tick_s)
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
    if not _due(memo, meta, status):
        return
    memo["refreshed"] = time.monotonic()
    generation, namespace = meta.get("generation"), namespace or "default"
    old = status.get("conditions")
    patch.status["observedGeneration"] = generation
    try:
        patch.status["cronJobs"] = await reconcile_cronjobs(body, spec, namespace, name)
        one_off = await backup_now(body, spec, meta, status, namespace, name)
        if one_off is not None:
            patch.status["oneOffBackup"] = one_off
        jobs = await kube.jobs(namespace, {LABEL: name})
        await _report_skips(body, memo, namespace, name)
    except (kube.MissingReference, ApiException) as exc:
        conditions.fail(
            patch,
            status,
            body,
            memo,
            kind=KIND,
            reason="ApiError",
            exc=exc,
            generation=generation,
            retry=int(kwargs.get("retry", 0)),
            report=lambda c: metrics.condition(namespace, name, c["type"], c["status"]),
        )
    found: list[repo_status.Backup] | None
    try:
        found, repo_error = await repository.read(namespace, spec), None
    except (kube.MissingReference, BackupError, OSError, subprocess.TimeoutExpired) as exc:
        found, repo_error = None, exc
    archiver: repo_status.Archiver | Exception | None
    try:
        archiver = await repository.archiver(namespace, spec)
    except (kube.MissingReference, OSError, asyncpg.PostgresError, TimeoutError) as exc:
        archiver = exc
    if found == [] and isinstance(archiver, repo_status.Archiver):  # the database is up
        try:
            await first_backup(body, spec, namespace, name)
        except ApiException as exc:  # the next reading asks again
            kopf.warn(body, reason="ApiError", message=f"first backup: {exc}")
    drill = await drills.latest(body, status, jobs, found, namespace) or status.get("lastDrill")

    # The database's clock when it answered: the pod's may be skewed.
    now = archiver.now if isinstance(archiver, repo_status.Archiver) and archiver.now else None
    now = now or datetime.now(UTC)
    created = datetime.fromisoformat(
        meta.get("creationTimestamp", now.isoformat()).replace("Z", "+00:00")
    )
    parts = assess(spec, found, archiver, drill, now, created)
    if repo_error is not None:
        ready = conditions.condition(
            "Ready", False, "RepositoryUnreadable", f"{type(repo_error).__name__}: {repo_error}"
        )
    else:
        ready = conditions.summary(parts, "Recoverable", f"{len(found or [])} backups")
    last_archived = archiver.last_archived if isinstance(archiver, repo_status.Archiver) else None
    window = repo_status.window(found, last_archived) if found is not None else None
    _publish(body, memo, namespace, name, [ready, *parts])
    metrics.backup_figures(namespace, name, found, window, archiver, drill)
    patch.status.update(
        {
            "lastFailure": _last_failure(jobs),
            "lastDrill": drill,
            "conditions": conditions.merged(old, [ready, *parts], generation),
        }
    )
    if found is not None:  # what could not be read keeps its last reading
        latest = repo_status.latest_by_kind(found)
        patch.status.update(
            {
                "lastBackups": {kind: b.as_status() for kind, b in latest.items()},
                "lastBackup": repo_status.iso(max(b.finished for b in found)) if found else None,
                "recoveryWindow": (
                    {
                        "from": repo_status.iso(window.start),
                        "to": repo_status.iso(window.end),
                        "length": window.short(),
                    }
                    if window
                    else None
                ),
            }
        )
    if repo_error is None:
        conditions.recovered(memo)
        metrics.succeeded(KIND, namespace, name)
    else:
        metrics.failed(KIND)


def _publish(
    body: kopf.Body, memo: kopf.Memo, namespace: str, name: str, parts: list[dict[str, Any]]
) -> None:
    """Condition gauges, and one Warning per spell of each failing condition."""
    for part in parts:
        metrics.condition(namespace, name, part["type"], part["status"])
        if part["type"] != "Ready":  # (Ready repeats one of the others)
            failing = part["status"] == "False"
            conditions.warn_once(memo, part["type"], failing, body, part["reason"], part["message"])
