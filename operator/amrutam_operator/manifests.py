"""The Kubernetes objects the operator creates, as pure functions of their resources.

No API calls here: each builder takes a resource's name and spec and returns a manifest,
so every object can be checked (and its command run) without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from amrutam.backups.scripts import BACKUP_SCRIPT, RESTORE_SCRIPT, RUN_DIR
from amrutam_operator.config import settings

LABEL = "platform.amrutam.io/backup-schedule"
RESTORE_LABEL = "platform.amrutam.io/restore"
DRILL_LABEL = "platform.amrutam.io/drill"
TYPE_LABEL = "platform.amrutam.io/backup-type"
PGBACKREST_TYPE = {"full": "full", "differential": "diff", "incremental": "incr"}
CONFIG_DIR = "/etc/pgbackrest"
S3_CA_DIR = f"{CONFIG_DIR}/s3-ca"
S3_CA_FILE = f"{S3_CA_DIR}/ca.crt"
# Restores lay the data directory out as the chart's PostgreSQL expects it on its volume.
MOUNT = "/var/lib/postgresql/data"
PGDATA = f"{MOUNT}/pgdata"
RESULT = "/dev/termination-log"  # read back by the operator from the pod's status
# After an outage the CronJob controller starts the most recent missed run only, and only
# within this long after it was due: one catch-up run, never a burst.
CATCH_UP_S = 6 * 3600


def parse_time(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def repo_options(spec: Mapping[str, Any], ca_file: str | None = S3_CA_FILE) -> list[str]:
    """The repository as the BackupSchedule declares it: the spec is the truth for every
    command the operator runs or builds (options override the ConfigMap's file). An
    object store's private CA is read from ``ca_file`` (where a Job mounts it)."""
    repo = spec["repo"]
    options = [f"--repo1-type={repo['type']}", f"--repo1-path={repo.get('path', '/pgbackrest')}"]
    s3 = repo.get("s3")
    if repo["type"] == "s3" and s3:
        options += [
            f"--repo1-s3-bucket={s3['bucket']}",
            f"--repo1-s3-endpoint={s3['endpoint']}",
            f"--repo1-s3-region={s3['region']}",
            f"--repo1-s3-uri-style={s3.get('uriStyle', 'path')}",
            f"--repo1-s3-key-type={s3.get('keyType', 'shared')}",
        ]
        if s3.get("port"):
            options.append(f"--repo1-storage-port={int(s3['port'])}")
        if s3.get("caSecretRef") and ca_file:
            options.append(f"--repo1-storage-ca-file={ca_file}")
    return options


def s3_ca(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Secret reference of the object store's CA, if the schedule names one."""
    s3 = spec["repo"].get("s3") if spec["repo"]["type"] == "s3" else None
    return (s3 or {}).get("caSecretRef")


def retention(spec: Mapping[str, Any]) -> dict[str, str]:
    """Expiry after each backup keeps full backups (and their WAL) for the window."""
    days = int((spec.get("retention") or {}).get("pitrWindowDays", 7))
    return {
        "PGBACKREST_REPO1_RETENTION_FULL_TYPE": "time",
        "PGBACKREST_REPO1_RETENTION_FULL": f"{days}",
    }


def _env(spec: Mapping[str, Any], **values: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "PGBACKREST_CONFIG", "value": f"{CONFIG_DIR}/pgbackrest.conf"},
        # The root filesystem is read-only: logs and locks go to the pod's emptyDir.
        {"name": "PGBACKREST_LOG_PATH", "value": "/tmp"},  # noqa: S108
        {"name": "PGBACKREST_LOCK_PATH", "value": "/tmp"},  # noqa: S108
        {"name": "RESULT", "value": RESULT},
        *({"name": k, "value": v} for k, v in values.items()),
    ]
    s3 = spec["repo"].get("s3")
    # With web-id the pod's own identity signs (its service account's), no keys.
    if spec["repo"]["type"] == "s3" and s3 and s3.get("keyType", "shared") == "shared":
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
    return env


def _container(
    name: str,
    image: str,
    command: list[str],
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    uid: int | None = None,
) -> dict[str, Any]:
    security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    if uid is not None:
        security |= {"runAsUser": uid, "runAsGroup": uid}
    return {
        "name": name,
        "image": image,
        "command": command,
        "env": env,
        "volumeMounts": mounts,
        "terminationMessagePath": RESULT,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": security,
    }


def _pod(
    labels: Mapping[str, str],
    spec: Mapping[str, Any],
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    uid: int,
) -> dict[str, Any]:
    """A Job's pod: the repository's configuration and client certificate mounted, the
    given volumes, an emptyDir /tmp shared by its containers, never privileged."""
    volumes = [
        {"name": "config", "configMap": {"name": spec["configMapRef"]["name"]}},
        {"name": "tmp", "emptyDir": {}},
        *volumes,
    ]
    # The file alone (subPath): a ConfigMap volume is read-only, so the certificate's
    # mount point could not be made inside it and the container would never start.
    shared = [
        {
            "name": "config",
            "mountPath": f"{CONFIG_DIR}/pgbackrest.conf",
            "subPath": "pgbackrest.conf",
            "readOnly": True,
        },
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108  (an emptyDir in the pod)
    ]
    if spec.get("tlsSecretRef"):
        volumes.append(
            {
                "name": "tls",
                "secret": {"secretName": spec["tlsSecretRef"]["name"], "defaultMode": 0o440},
            }
        )
        shared.append({"name": "tls", "mountPath": f"{CONFIG_DIR}/tls", "readOnly": True})
    if ca := s3_ca(spec):
        item = {"key": ca.get("key", "ca.crt"), "path": "ca.crt"}
        volumes.append({"name": "s3-ca", "secret": {"secretName": ca["name"], "items": [item]}})
        shared.append({"name": "s3-ca", "mountPath": S3_CA_DIR, "readOnly": True})
    for container in containers:
        container["volumeMounts"] = [*shared, *container["volumeMounts"]]
    account = (
        {"serviceAccountName": spec["serviceAccountName"]} if spec.get("serviceAccountName") else {}
    )
    return {
        "metadata": {"labels": dict(labels)},
        "spec": {
            **account,
            **settings().job_pod.fields(),  # pull secrets and placement, from the chart
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": uid,
                "runAsGroup": uid,
                "fsGroup": uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": containers,
            "volumes": volumes,
        },
    }


def backup_job_spec(name: str, spec: Mapping[str, Any], kind: str) -> dict[str, Any]:
    deadline = int(spec.get("jobDeadlineSeconds", 7200))
    command = [
        "sh",
        "-c",
        BACKUP_SCRIPT,
        "backup",
        f"--stanza={spec.get('stanza', 'amrutam')}",
        *repo_options(spec),
    ]
    # Wait for a running backup for at most half the deadline, leaving the other half
    # for this backup itself.
    env = _env(
        spec,
        PGBACKREST_TYPE=PGBACKREST_TYPE[kind],
        **retention(spec),
        LOCK_WAIT_S=str(deadline // 2),
        LOCK_POLL_S="5",
    )
    image = spec.get("image") or settings().backup_image
    return {
        "backoffLimit": 1,
        # A backup that runs longer is failed, not left hanging.
        "activeDeadlineSeconds": deadline,
        "ttlSecondsAfterFinished": 7 * 86400,
        "template": _pod(
            {LABEL: name, TYPE_LABEL: kind},
            spec,
            [_container("pgbackrest", image, command, env, [])],
            [],
            10001,
        ),
    }


def cronjob(name: str, spec: Mapping[str, Any], kind: str, schedule: str) -> dict[str, Any]:
    """The CronJob for one backup type, or for the restore drill (``kind="drill"``)."""
    labels = {LABEL: name, TYPE_LABEL: kind, "app.kubernetes.io/managed-by": "amrutam-operator"}
    job = drill_job_spec(name, spec) if kind == "drill" else backup_job_spec(name, spec, kind)
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
            "jobTemplate": {"metadata": {"labels": labels}, "spec": job},
        },
    }


def restore_options(target: Mapping[str, Any]) -> list[str]:
    if target.get("latest"):
        return []
    moment = parse_time(target["time"]).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return ["--type=time", f"--target={moment}", "--target-action=promote"]


def _restore_container(source: Mapping[str, Any], target: Mapping[str, Any], **env: str) -> Any:
    command = [
        "sh",
        "-c",
        RESTORE_SCRIPT,
        "restore",
        f"--stanza={source.get('stanza', 'amrutam')}",
        *repo_options(source),
        *restore_options(target),
    ]
    return _container(
        "restore",
        settings().postgres_image,
        command,
        _env(
            source, PGDATA=PGDATA, RUN_DIR=RUN_DIR, PGBACKREST_SPOOL_PATH=f"{RUN_DIR}/spool", **env
        ),
        [{"name": "data", "mountPath": MOUNT}],
    )


def restore_job(
    name: str, generation: int, spec: Mapping[str, Any], schedule: Mapping[str, Any]
) -> dict[str, Any]:
    """Restore into the claim, boot PostgreSQL on it to the target, report the point
    reached (the container's termination message), and leave it ready to serve."""
    claim = spec["into"]["persistentVolumeClaim"]["name"]
    pod = _pod(
        {RESTORE_LABEL: name},
        schedule["spec"],
        [_restore_container(schedule["spec"], spec["target"])],
        [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        settings().postgres_uid,
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{name}-restore-g{generation}", "labels": {RESTORE_LABEL: name}},
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 6 * 3600, "template": pod},
    }


def drill_job_spec(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Restore the latest backup into a scratch volume that lives and dies with the pod,
    boot it, and probe it: row counts and the audit seal chain (the probe container)."""
    drill = spec["drill"]
    key = drill["signingKeySecretRef"]
    probe = _container(
        "probe",
        spec.get("image") or settings().backup_image,
        ["amrutam", "backup", "probe", f"--socket-dir={RUN_DIR}", f"--result={RESULT}"],
        [
            {
                "name": "AMRUTAM_AUDIT_SIGNING_KEY",
                "valueFrom": {"secretKeyRef": {"name": key["name"], "key": key["key"]}},
            }
        ],
        [],
        uid=10001,
    )
    scratch = {
        "name": "data",
        "ephemeral": {
            "volumeClaimTemplate": {
                "metadata": {"labels": {DRILL_LABEL: name}},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": drill.get("storage", "50Gi")}},
                    **(
                        {"storageClassName": drill["storageClassName"]}
                        if drill.get("storageClassName")
                        else {}
                    ),
                },
            }
        },
    }
    deadline = int(drill.get("deadlineSeconds", 6 * 3600))
    container = _restore_container(spec, {"latest": True}, PROBE_WAIT_S=str(deadline))
    return {
        "backoffLimit": 0,
        "activeDeadlineSeconds": deadline,
        "ttlSecondsAfterFinished": 7 * 86400,
        "template": _pod(
            {LABEL: name, DRILL_LABEL: name},
            spec,
            [container, probe],
            [scratch],
            settings().postgres_uid,
        ),
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
