"""PointInTimeRestore: a restore Job into a new volume, never over the running database.

A target outside the schedule's recovery window is refused before anything is created.
Every spec change (a new generation) is a new attempt with its own Job, so a failed
restore is retried by editing the resource.
"""

from __future__ import annotations

from typing import Any

import kopf

from amrutam.backups.status import Window, iso
from amrutam_operator import conditions, kube, manifests, metrics
from amrutam_operator.config import GROUP, VERSION, settings

KIND = "PointInTimeRestore"


def refusal(target: dict[str, Any], schedule: dict[str, Any] | None) -> str | None:
    """Why the restore cannot start, or None."""
    if schedule is None:
        return "the BackupSchedule does not exist"
    window = (schedule.get("status") or {}).get("recoveryWindow")
    if not window:
        return "the BackupSchedule reports no recovery window yet (no backups?)"
    if target.get("latest"):
        return None
    moment = manifests.parse_time(target["time"])
    known = Window(manifests.parse_time(window["from"]), manifests.parse_time(window["to"]))
    if not known.contains(moment):
        return (
            f"target {iso(moment)} is outside the recovery window "
            f"{iso(known.start)} .. {iso(known.end)}"
        )
    return None


def _finished(job: dict[str, Any] | None) -> tuple[str, str] | None:
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"], cond.get("message") or cond.get("reason") or ""
    return None


@kopf.timer(GROUP, VERSION, "pointintimerestores", interval=settings().tick_s)
async def reconcile(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    namespace: str | None,
    name: str,
    **_: Any,
) -> None:
    generation, namespace = int(meta.get("generation") or 1), namespace or "default"
    old = status.get("conditions")
    now = conditions.now_iso()

    if status.get("observedGeneration") != generation:  # a new attempt
        ref = spec["backupScheduleRef"]["name"]
        schedule = await kube.custom_object(namespace, "backupschedules", ref)
        why = refusal(dict(spec["target"]), schedule)
        patch.status["observedGeneration"] = generation
        if why is not None or schedule is None:
            patch.status.update(
                {
                    "phase": "Failed",
                    "message": why,
                    "finishedAt": now,
                    "conditions": conditions.merged(
                        old,
                        [conditions.condition("Ready", False, "TargetRefused", why or "")],
                        generation,
                    ),
                }
            )
            kopf.warn(body, reason="RestoreRefused", message=why or "")
            metrics.failed(KIND)
            return
        job = manifests.restore_job(name, generation, dict(spec), schedule)
        claim = manifests.restore_pvc(dict(spec))
        kopf.adopt(job, owner=body)
        await kube.ensure_pvc(namespace, claim)
        await kube.create_job(namespace, job)
        patch.status.update(
            {
                "phase": "Running",
                "startedAt": now,
                "finishedAt": None,
                "message": None,
                "job": job["metadata"]["name"],
                "conditions": conditions.merged(
                    old,
                    [
                        conditions.condition(
                            "Ready", False, "Restoring", f"job {job['metadata']['name']}"
                        )
                    ],
                    generation,
                ),
            }
        )
        kopf.info(body, reason="RestoreStarted", message=job["metadata"]["name"])
        return

    if status.get("phase") != "Running" or not status.get("job"):
        return
    outcome = _finished(await kube.job(namespace, status["job"]))
    if outcome is None:
        return
    kind, message = outcome
    ok = kind == "Complete"
    target = spec["target"]
    patch.status.update(
        {
            "phase": "Succeeded" if ok else "Failed",
            "finishedAt": now,
            "restoredTo": ("latest" if target.get("latest") else target["time"]) if ok else None,
            "message": message or None,
            "conditions": conditions.merged(
                old,
                [
                    conditions.condition(
                        "Ready",
                        ok,
                        "Restored" if ok else "RestoreFailed",
                        message
                        or ("restored" if ok else "the restore job failed; edit the spec to retry"),
                    )
                ],
                generation,
            ),
        }
    )
    if ok:
        kopf.info(body, reason="RestoreSucceeded", message=status["job"])
        metrics.succeeded(KIND, namespace, name)
    else:
        kopf.warn(body, reason="RestoreFailed", message=message or status["job"])
        metrics.failed(KIND)
