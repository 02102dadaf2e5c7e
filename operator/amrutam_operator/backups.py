"""BackupSchedule: pgBackRest CronJobs, and an honest view of what can be restored.

The operator owns one CronJob per schedule (owner references: deleting the schedule
removes them). Status comes from the repository itself (``pgbackrest info``, run here
with the schedule's configuration) and from PostgreSQL's ``pg_stat_archiver``, so a
failing WAL archive shows even while the last backup looks fine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import kopf
from croniter import croniter

from amrutam.backups import status as repo_status
from amrutam.backups.pgbackrest import BackupError, PgBackRest
from amrutam.infra.db import libpq_dsn
from amrutam_operator import conditions, kube, metrics
from amrutam_operator.config import GROUP, VERSION, settings
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
    wanted = {
        kind: cronjob(name, spec, kind, schedule)
        for kind, schedule in (spec.get("schedules") or {}).items()
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
    job_name = f"{name}-now-{digest}"
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "labels": {LABEL: name, TYPE_LABEL: kind}},
        "spec": backup_job_spec(name, spec, kind),
    }
    kopf.adopt(job, owner=body)
    if await kube.create_job(namespace, job):
        kopf.info(body, reason="BackupRequested", message=f"{kind} backup {job_name}")
    return value


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


async def _repository(namespace: str, spec: Mapping[str, Any]) -> list[repo_status.Backup]:
    """Run `pgbackrest info` with the schedule's own configuration and credentials."""
    config = (await kube.configmap_data(namespace, spec["configMapRef"]["name"])).get(
        "pgbackrest.conf"
    )
    if not config:
        raise kube.MissingReference("configmap has no pgbackrest.conf")
    env: dict[str, str] = {}
    s3 = spec["repo"].get("s3")
    if spec["repo"]["type"] == "s3" and s3:
        creds = await kube.secret_data(namespace, s3["credentialsSecretRef"]["name"])
        env = {
            "PGBACKREST_REPO1_S3_KEY": creds.get("key", ""),
            "PGBACKREST_REPO1_S3_KEY_SECRET": creds.get("secret", ""),
        }
    tls = (
        await kube.secret_data(namespace, spec["tlsSecretRef"]["name"])
        if spec.get("tlsSecretRef")
        else None
    )
    info = await asyncio.to_thread(_info, config, spec.get("stanza", "amrutam"), env, tls)
    return repo_status.backups(info)


def _info(
    config: str, stanza: str, env: dict[str, str], tls: dict[str, str] | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="amrutam-pgbackrest-") as folder:
        root = Path(folder)
        root.chmod(0o755)  # pgbackrest may run as another user than the operator
        (root / "pgbackrest.conf").write_text(config)
        (root / "pgbackrest.conf").chmod(0o644)
        options = ["--log-level-file=off", f"--lock-path={root}"]
        for key, option in (("tls.crt", "cert"), ("tls.key", "key"), ("ca.crt", "ca")):
            if tls is not None:
                (root / key).write_text(tls.get(key, ""))
                options.append(f"--repo1-host-{option}-file={root / key}")
        return PgBackRest(root / "pgbackrest.conf", stanza, env).info(*options)


async def _archiver(namespace: str, spec: Mapping[str, Any]) -> repo_status.Archiver | None:
    ref = spec.get("databaseSecretRef")
    if not ref:
        return None
    dsn = await kube.secret_value(namespace, {"key": "dsn", **ref})
    conn = await asyncpg.connect(libpq_dsn(dsn), timeout=10)
    try:
        return await repo_status.archiver(conn)
    finally:
        await conn.close()


def _last_failure(jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    failures = []
    for job in jobs:
        for cond in (job.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Failed" and cond.get("status") == "True":
                failures.append(
                    {
                        "type": job["metadata"].get("labels", {}).get(TYPE_LABEL, "unknown"),
                        "time": cond.get("lastTransitionTime"),
                        "message": cond.get("message") or cond.get("reason") or "job failed",
                    }
                )
    return max(failures, key=lambda f: f["time"] or "") if failures else None


def _due(memo: kopf.Memo, meta: kopf.Meta, status: kopf.Status) -> bool:
    if status.get("observedGeneration") != meta.get("generation"):
        return True
    if meta.get("annotations", {}).get(BACKUP_NOW) != status.get("oneOffBackup"):
        return True
    last = memo.get("refreshed")
    return last is None or time.monotonic() - last >= settings().backup_status_interval_s


@kopf.timer(GROUP, VERSION, "backupschedules", interval=settings().tick_s)
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
        found = await _repository(namespace, spec)
        archiver = await _archiver(namespace, spec)
        failure = _last_failure(await kube.jobs(namespace, {LABEL: name}))
    except (kube.MissingReference, BackupError, OSError, asyncpg.PostgresError) as exc:
        conditions.fail(
            patch,
            status,
            body,
            memo,
            kind=KIND,
            reason="RepositoryUnreadable",
            exc=exc,
            generation=generation,
            retry=int(kwargs.get("retry", 0)),
        )
    conditions.recovered(memo)

    now = datetime.now(UTC)
    created = datetime.fromisoformat(
        meta.get("creationTimestamp", now.isoformat()).replace("Z", "+00:00")
    )
    grace = timedelta(seconds=int(spec.get("jobDeadlineSeconds", 7200)))
    fresh, fresh_msg = freshness(spec.get("schedules") or {}, found, now, created, grace)
    window = repo_status.window(found, archiver.last_archived if archiver else None)
    latest = repo_status.latest_by_kind(found)
    if archiver is None:
        wal = conditions.condition(
            "WALArchiving", False, "Unknown", "no databaseSecretRef: pg_stat_archiver not read"
        )
        wal["status"] = "Unknown"
    elif archiver.healthy:
        wal = conditions.condition(
            "WALArchiving", True, "Archiving", f"{archiver.archived} segments archived"
        )
    else:
        wal = conditions.condition(
            "WALArchiving",
            False,
            "ArchiveFailing",
            f"{archiver.failed} failures, last {archiver.last_failed_wal} at "
            f"{archiver.last_failed.isoformat() if archiver.last_failed else '?'}",
        )
    for kind, backup in latest.items():
        metrics.BACKUP_FINISHED.labels(namespace, name, kind).set(backup.finished.timestamp())
    if archiver is not None:
        metrics.WAL_ARCHIVING.labels(namespace, name).set(1 if archiver.healthy else 0)
    failing = archiver is not None and not archiver.healthy
    conditions.warn_once(memo, "wal_failing", failing, body, "WALArchivingFailing", wal["message"])
    conditions.warn_once(memo, "overdue", not fresh, body, "BackupOverdue", fresh_msg)
    patch.status.update(
        {
            "lastBackups": {kind: b.as_status() for kind, b in latest.items()},
            "lastBackup": repo_status.iso(max(b.finished for b in found)) if found else None,
            "recoveryWindow": (
                {"from": repo_status.iso(window.start), "to": repo_status.iso(window.end)}
                if window
                else None
            ),
            "lastFailure": failure,
            "conditions": conditions.merged(
                old,
                [
                    conditions.condition(
                        "Ready", True, "Reconciled", f"{len(found)} backups in the repository"
                    ),
                    conditions.condition(
                        "BackupFresh", fresh, "Fresh" if fresh else "Overdue", fresh_msg
                    ),
                    wal,
                ],
                generation,
            ),
        }
    )
    metrics.succeeded(KIND, namespace, name)
