"""The Kubernetes objects the operator creates, as pure functions of their resources.

No API calls here: each builder takes a resource's name and spec and returns a manifest,
so every object can be checked (and its command run) without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from amrutam_operator.config import settings

LABEL = "platform.amrutam.io/backup-schedule"
TYPE_LABEL = "platform.amrutam.io/backup-type"
PGBACKREST_TYPE = {"full": "full", "differential": "diff", "incremental": "incr"}
CONFIG_DIR = "/etc/pgbackrest"
MOUNT = "/var/lib/postgresql/restore"
# After an outage the CronJob controller starts the most recent missed run only, and only
# within this long after it was due: one catch-up run, never a burst.
CATCH_UP_S = 6 * 3600


def parse_time(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def job_pod(
    name: str,
    spec: Mapping[str, Any],
    command: list[str],
    extra_volumes: list[dict[str, Any]] | None = None,
    extra_mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "PGBACKREST_CONFIG", "value": f"{CONFIG_DIR}/pgbackrest.conf"},
        # The root filesystem is read-only: logs and locks go to the pod's emptyDir.
        {"name": "PGBACKREST_LOG_PATH", "value": "/tmp"},  # noqa: S108
        {"name": "PGBACKREST_LOCK_PATH", "value": "/tmp"},  # noqa: S108
    ]
    s3 = spec["repo"].get("s3")
    if spec["repo"]["type"] == "s3" and s3:
        secret = s3["credentialsSecretRef"]["name"]
        env += [
            {
                "name": "PGBACKREST_REPO1_S3_KEY",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": "key"}},
            },
            {
                "name": "PGBACKREST_REPO1_S3_KEY_SECRET",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": "secret"}},
            },
        ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": spec["configMapRef"]["name"]}},
        {"name": "tmp", "emptyDir": {}},
        *(extra_volumes or []),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108  (an emptyDir in the pod)
        *(extra_mounts or []),
    ]
    if spec.get("tlsSecretRef"):
        volumes.append(
            {
                "name": "tls",
                "secret": {"secretName": spec["tlsSecretRef"]["name"], "defaultMode": 0o400},
            }
        )
        mounts.append({"name": "tls", "mountPath": f"{CONFIG_DIR}/tls", "readOnly": True})
    return {
        "metadata": {"labels": {LABEL: name}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "pgbackrest",
                    "image": spec.get("image") or settings().backup_image,
                    "command": command,
                    "env": env,
                    "volumeMounts": mounts,
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                        "limits": {"memory": "1Gi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            "volumes": volumes,
        },
    }


def backup_job_spec(name: str, spec: Mapping[str, Any], kind: str) -> dict[str, Any]:
    stanza = spec.get("stanza", "amrutam")
    command = ["pgbackrest", f"--stanza={stanza}", f"--type={PGBACKREST_TYPE[kind]}", "backup"]
    return {
        "backoffLimit": 1,
        # A backup that runs longer is failed, not left hanging.
        "activeDeadlineSeconds": int(spec.get("jobDeadlineSeconds", 7200)),
        "ttlSecondsAfterFinished": 7 * 86400,
        "template": job_pod(name, spec, command),
    }


def cronjob(name: str, spec: Mapping[str, Any], kind: str, schedule: str) -> dict[str, Any]:
    labels = {LABEL: name, TYPE_LABEL: kind, "app.kubernetes.io/managed-by": "amrutam-operator"}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": f"{name}-{kind}", "labels": labels},
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": CATCH_UP_S,
            "suspend": bool(spec.get("suspend", False)),
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": backup_job_spec(name, spec, kind),
            },
        },
    }


def restore_job(
    name: str, generation: int, spec: dict[str, Any], schedule: dict[str, Any]
) -> dict[str, Any]:
    target, claim = spec["target"], spec["into"]["persistentVolumeClaim"]
    source = schedule["spec"]
    command = [
        "pgbackrest",
        f"--stanza={source.get('stanza', 'amrutam')}",
        f"--pg1-path={MOUNT}/pgdata",
    ]
    if not target.get("latest"):
        moment = parse_time(target["time"]).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        command += ["--type=time", f"--target={moment}", "--target-action=promote"]
    command.append("restore")
    pod = job_pod(
        name,
        source,
        command,
        extra_volumes=[{"name": "restore", "persistentVolumeClaim": {"claimName": claim["name"]}}],
        extra_mounts=[{"name": "restore", "mountPath": MOUNT}],
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{name}-restore-g{generation}",
            "labels": {"platform.amrutam.io/restore": name},
        },
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 6 * 3600, "template": pod},
    }


def restore_pvc(spec: dict[str, Any]) -> dict[str, Any]:
    claim = spec["into"]["persistentVolumeClaim"]
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim["name"]},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": claim["storage"]}},
        },
    }
    if claim.get("storageClassName"):
        body["spec"]["storageClassName"] = claim["storageClassName"]
    return body
