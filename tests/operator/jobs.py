"""The Job controller and the kubelet for the emulator: the Jobs the operator created are
run for real on this machine (``tests/pods.py``), and their outcome is written back as a
cluster would report it: a pod with its containers' exit codes and termination messages,
and the Job's Complete or Failed condition."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from tests.operator.conftest import Cluster
from tests.pods import Finished, Pod, Sources


def _sources(cluster: Cluster, claims: dict[str, Path], host_paths: tuple[str, ...]) -> Sources:
    objects = cluster.emulator.objects
    configmaps, secrets = {}, {}
    for (resource, _, name), obj in objects.items():
        if obj.deleted:
            continue
        if resource.plural == "configmaps":
            configmaps[name] = dict(obj.raw.get("data") or {})
        elif resource.plural == "secrets":
            secrets[name] = {
                k: base64.b64decode(v).decode() for k, v in (obj.raw.get("data") or {}).items()
            }
    return Sources(configmaps, secrets, claims, host_paths=host_paths)


async def run_job(
    cluster: Cluster,
    name: str,
    root: Path,
    claims: dict[str, Path] | None = None,
    host_paths: tuple[str, ...] = (),
) -> dict[str, Finished]:
    """Run the pod of the Job the operator created, to its end."""
    job = cluster.get("batch/v1", "jobs", name)
    sources = _sources(cluster, claims or {}, host_paths)
    pod = Pod(job["spec"]["template"]["spec"], root / name, sources)
    return await asyncio.to_thread(pod.run, 300)


async def report(cluster: Cluster, name: str, results: dict[str, Finished]) -> None:
    """What the kubelet and the Job controller would write for that run."""
    job = cluster.get("batch/v1", "jobs", name)
    labels: dict[str, Any] = {
        **(job["spec"]["template"].get("metadata", {}).get("labels") or {}),
        "job-name": name,
    }
    await cluster.create(
        "v1",
        "pods",
        {
            "metadata": {"name": f"{name}-pod", "labels": labels},
            "status": {"containerStatuses": [r.as_status() for r in results.values()]},
        },
    )
    ok = all(r.ok for r in results.values())
    now = cluster.now()
    await cluster.patch(
        "batch/v1",
        "jobs",
        name,
        {
            "status": {
                "startTime": job.get("metadata", {}).get("creationTimestamp") or now,
                "conditions": [
                    {
                        "type": "Complete" if ok else "Failed",
                        "status": "True",
                        "lastTransitionTime": now,
                        "reason": "Completed" if ok else "BackoffLimitExceeded",
                    }
                ],
            }
        },
    )


async def from_cronjob(cluster: Cluster, cronjob: str, name: str) -> None:
    """A run of a CronJob, as its controller would start one."""
    template = cluster.get("batch/v1", "cronjobs", cronjob)["spec"]["jobTemplate"]
    body = {
        "metadata": {"name": name, "labels": dict(template["metadata"]["labels"])},
        "spec": template["spec"],
    }
    await cluster.create("batch/v1", "jobs", body)
