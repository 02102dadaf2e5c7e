"""Restore drills of a BackupSchedule: the newest drill Job's report read back (its
restore's recovery time and point, its probe's row counts and audit seal check), and
whether a drill verified the backups in time (``RestoreVerified``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import kopf
from croniter import croniter

from amrutam.backups import status as repo_status
from amrutam.backups.scripts import restore_report
from amrutam_operator import conditions, kube
from amrutam_operator.manifests import TYPE_LABEL, parse_time


def finished_at(job: Mapping[str, Any]) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond.get("lastTransitionTime") or "") or None
    return None


def job_kind(job: Mapping[str, Any]) -> str:
    return str(job["metadata"].get("labels", {}).get(TYPE_LABEL, "unknown"))


async def latest(
    body: kopf.Body,
    status: kopf.Status,
    jobs: list[dict[str, Any]],
    found: list[repo_status.Backup] | None,
    namespace: str,
) -> dict[str, Any] | None:
    """The newest finished drill not recorded yet, read from its pods' reports; its Job
    (and so its scratch volume) is deleted once read."""
    last: dict[str, Any] | None = status.get("lastDrill")
    done = sorted(
        (j for j in jobs if job_kind(j) == "drill" and finished_at(j)),
        key=lambda j: finished_at(j) or "",
    )
    if not done or (last and last.get("job") == done[-1]["metadata"]["name"]):
        return None
    job = done[-1]
    name = job["metadata"]["name"]
    report = kube.termination_messages(await kube.job_pods(namespace, name))
    started = (job.get("status") or {}).get("startTime")
    ok = any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )
    recovered, seconds = restore_report(report.get("restore"))
    probe = _json(report.get("probe"))
    ok = ok and bool(probe.get("ok"))
    before = [b for b in found or [] if started and b.finished <= parse_time(started)]
    drill: dict[str, Any] = {
        "job": name,
        "startedAt": started,
        "finishedAt": finished_at(job),
        "succeededAt": finished_at(job) if ok else (last or {}).get("succeededAt"),
        "backupLabel": max(before, key=lambda b: b.finished).label if before else None,
        "recoveredTo": repo_status.iso(recovered) if recovered else None,
        "recoverySeconds": seconds,
        "rows": probe.get("rows"),
        "result": "Succeeded" if ok else "Failed",
        "message": _drill_message(ok, seconds, probe, report),
    }
    if ok:
        kopf.info(body, reason="DrillSucceeded", message=drill["message"])
    else:
        kopf.warn(body, reason="DrillFailed", message=drill["message"])
    for finished in done:
        await kube.delete_job(namespace, finished["metadata"]["name"])
    return drill


def _json(message: str | None) -> dict[str, Any]:
    try:
        found = json.loads(message or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _drill_message(
    ok: bool, seconds: int | None, probe: Mapping[str, Any], report: Mapping[str, str]
) -> str:
    if ok:
        rows = sum((probe.get("rows") or {}).values())
        return (
            f"restored and booted in {seconds} s; {rows} rows; "
            f"audit seal chain verifies ({(probe.get('seals') or {}).get('checked')} rows)"
        )
    if seconds is None:
        return "the restore did not finish: " + (report.get("restore") or "no report")[-300:]
    if probe and not probe.get("ok"):
        return f"the restored audit trail does not verify: {probe.get('seals')}"
    return "the probe did not finish: " + (report.get("probe") or "no report")[-300:]


def verified(
    drill_spec: Mapping[str, Any], last: Mapping[str, Any] | None, now: datetime, created: datetime
) -> dict[str, Any]:
    grace = timedelta(seconds=int(drill_spec.get("deadlineSeconds", 21600)))
    due: datetime = croniter(drill_spec["schedule"], now - grace).get_prev(datetime)
    if last and last.get("result") == "Failed":
        return conditions.condition(
            "RestoreVerified", False, "DrillFailed", str(last.get("message") or "")
        )
    succeeded = last.get("succeededAt") if last else None
    if succeeded and parse_time(succeeded) >= due:
        return conditions.condition(
            "RestoreVerified", True, "Verified", str((last or {}).get("message") or "")
        )
    if due < created:
        return conditions.condition("RestoreVerified", True, "NotYetDue", "no drill was due yet")
    return conditions.condition(
        "RestoreVerified",
        False,
        "DrillOverdue",
        f"no successful drill since {repo_status.iso(due)}",
    )
