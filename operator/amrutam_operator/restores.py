"""PointInTimeRestore: a restore Job into a new volume, never over the running database.

A target outside the schedule's recovery window, or a claim that exists and was not
made by the operator for this same restore (the live database's, say), is refused
before anything is created. Each spec change (a new generation) is a new attempt with
its own Job; a change while an attempt runs waits for it to end, so two Jobs never write
into one volume. ``restoredTo`` is what the Job's restored server reached, read back
from its termination message. An API error leaves the attempt to be retried: the
generation counts as observed only once its Job exists.
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from amrutam.backups.scripts import restore_report
from amrutam.backups.status import Window, iso
from amrutam_operator import conditions, kube, manifests, metrics, turns
from amrutam_operator.config import GROUP, VERSION, backoff, settings

KIND = "PointInTimeRestore"
OWNER = "platform.amrutam.io/restore-uid"  # on a claim: the restore that created it


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


def claim_refusal(claim: dict[str, Any] | None, uid: str, users: list[str]) -> str | None:
    """A restore writes only into a claim it creates, or created before for itself and
    that no other pod mounts (a failed restore's claim someone started a database on)."""
    if claim is None:
        return None
    name = claim["metadata"]["name"]
    if (claim["metadata"].get("annotations") or {}).get(OWNER) != uid:
        return f"persistentVolumeClaim {name!r} exists and was not created for this restore"
    if users:
        return f"persistentVolumeClaim {name!r} is mounted by {', '.join(sorted(users))}"
    return None


async def claim_users(namespace: str, claim: str, restore: str) -> list[str]:
    """The pods, other than this restore's own Jobs', that mount the claim."""
    return [
        pod["metadata"]["name"]
        for pod in await kube.pods(namespace, {})
        if (pod["metadata"].get("labels") or {}).get(manifests.RESTORE_LABEL) != restore
        and any(
            (volume.get("persistentVolumeClaim") or {}).get("claimName") == claim
            for volume in (pod.get("spec") or {}).get("volumes") or []
        )
    ]


def _finished(job: dict[str, Any] | None) -> tuple[str, str] | None:
    if job is None:
        return "Failed", "the restore Job is gone"
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"], cond.get("message") or cond.get("reason") or ""
    return None


def reached(message: str | None) -> tuple[str | None, int | None]:
    """The restore container's report: the point reached (ISO) and the seconds it took."""
    moment, seconds = restore_report(message)
    return (iso(moment) if moment else None), seconds


def _ready(
    patch: kopf.Patch, old: Any, generation: int, ok: bool, reason: str, message: str
) -> None:
    patch.status["conditions"] = conditions.merged(
        old, [conditions.condition("Ready", ok, reason, message)], generation
    )


async def _start(
    spec: kopf.Spec,
    body: kopf.Body,
    patch: kopf.Patch,
    old: Any,
    namespace: str,
    name: str,
    generation: int,
) -> None:
    """A new attempt: refused before any work, or a claim and a Job."""
    now = conditions.now_iso()
    schedule = await kube.custom_object(
        namespace, "backupschedules", spec["backupScheduleRef"]["name"]
    )
    wanted = manifests.restore_pvc(dict(spec))
    claim_name = wanted["metadata"]["name"]
    existing = await kube.pvc(namespace, claim_name)
    why = refusal(dict(spec["target"]), schedule)
    reason = "TargetRefused"
    if why is None:
        users = await claim_users(namespace, claim_name, name) if existing else []
        why, reason = claim_refusal(existing, body["metadata"]["uid"], users), "ClaimInUse"
    if why is not None or schedule is None:
        patch.status.update(
            {"observedGeneration": generation, "phase": "Failed", "message": why, "finishedAt": now}
        )
        _ready(patch, old, generation, False, reason, why or "")
        kopf.warn(body, reason="RestoreRefused", message=why or "")
        metrics.failed(KIND)
        return
    if existing is None:
        wanted["metadata"]["labels"] = {manifests.RESTORE_LABEL: name}
        wanted["metadata"]["annotations"] = {OWNER: body["metadata"]["uid"]}
        await kube.create_pvc(namespace, wanted)
    job = manifests.restore_job(name, generation, dict(spec), schedule)
    kopf.adopt(job, owner=body)
    await kube.create_job(namespace, job)  # an existing Job of this attempt is kept
    patch.status.update(
        {
            "observedGeneration": generation,
            "phase": "Running",
            "startedAt": now,
            "finishedAt": None,
            "message": None,
            "restoredTo": None,
            "recoverySeconds": None,
            "job": job["metadata"]["name"],
        }
    )
    _ready(patch, old, generation, False, "Restoring", f"job {job['metadata']['name']}")
    kopf.info(body, reason="RestoreStarted", message=job["metadata"]["name"])


async def _finish(
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    namespace: str,
    name: str,
    outcome: tuple[str, str],
) -> None:
    kind, message = outcome
    ok = kind == "Complete"
    generation = int(status.get("observedGeneration") or 1)
    report = kube.termination_messages(await kube.job_pods(namespace, status["job"]))
    restored_to, seconds = reached(report.get("restore"))
    if ok and restored_to is None:
        message = "no transaction was replayed after the backup: restored to the backup's end"
    patch.status.update(
        {
            "phase": "Succeeded" if ok else "Failed",
            "finishedAt": conditions.now_iso(),
            "restoredTo": restored_to,
            "recoverySeconds": seconds,
            "message": message or None,
        }
    )
    detail = message or (
        f"restored to {restored_to} in {seconds} s"
        if ok
        else "the restore Job failed; edit the spec to retry"
    )
    _ready(
        patch,
        status.get("conditions"),
        generation,
        ok,
        "Restored" if ok else "RestoreFailed",
        detail,
    )
    if ok:
        kopf.info(body, reason="RestoreSucceeded", message=detail)
        metrics.succeeded(KIND, namespace, name)
    else:
        kopf.warn(body, reason="RestoreFailed", message=detail)
        metrics.failed(KIND)


@kopf.timer(GROUP, VERSION, "pointintimerestores", interval=settings().tick_s)
@turns.poll
async def reconcile(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    namespace: str | None,
    name: str,
    retry: int = 0,
    **_: Any,
) -> None:
    generation, namespace = int(meta.get("generation") or 1), namespace or "default"
    changed = status.get("observedGeneration") != generation
    try:
        if status.get("phase") == "Running" and status.get("job"):
            outcome = _finished(await kube.job(namespace, status["job"]))
            if outcome is not None:
                await _finish(status, body, patch, namespace, name, outcome)
            elif changed:  # never a second Job into the same volume
                _ready(
                    patch,
                    status.get("conditions"),
                    int(status.get("observedGeneration") or 1),
                    False,
                    "Restoring",
                    f"job {status['job']} runs; the changed spec starts when it ends",
                )
            return
        if changed:
            await _start(spec, body, patch, status.get("conditions"), namespace, name, generation)
    except (ApiException, kube.MissingReference) as exc:
        # The generation stays unobserved, so the attempt is retried; the condition says why.
        _ready(patch, status.get("conditions"), generation, False, "ApiError", f"{exc}")
        metrics.failed(KIND)
        raise kopf.TemporaryError(str(exc), delay=backoff(retry)) from exc
