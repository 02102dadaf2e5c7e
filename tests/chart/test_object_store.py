"""An S3-compatible object store on its own port under a private CA (MinIO, Ceph RGW, a
company's store): the database's archiving, the operator and every Job it builds trust
that CA for the endpoint and reach that port, and the egress policies let them."""

from __future__ import annotations

import copy
from typing import Any

from amrutam_operator import manifests

from tests.chart.rendering import named, of_kind, render, statefulset_pod
from tests.chart.test_chart import IN_CLUSTER_POSTGRES
from tests.operator.test_crds import validator

CA_FILE = "/etc/pgbackrest/s3-ca/ca.crt"


def private_store() -> dict[str, Any]:
    values = copy.deepcopy(IN_CLUSTER_POSTGRES)
    values["backups"]["repo"]["s3"] |= {
        "endpoint": "minio.storage.svc",
        "uriStyle": "path",
        "port": 9000,
        "caSecret": "store-ca",
    }
    return values


def test_the_database_archives_through_the_stores_port_trusting_its_ca() -> None:
    docs = render(private_store())
    config = named(docs, "ConfigMap", "amrutam-pgbackrest-db")["data"]["pgbackrest.conf"]
    assert "repo1-storage-port=9000" in config.splitlines()
    assert f"repo1-storage-ca-file={CA_FILE}" in config.splitlines()
    pod = statefulset_pod(docs, "amrutam-postgresql")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["s3-ca"]["secret"] == {
        "secretName": "store-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    # archive-push runs in the database's container, the remote in the server's.
    for container in pod["containers"]:
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["s3-ca"] == "/etc/pgbackrest/s3-ca", container["name"]


def test_the_schedule_names_the_port_and_ca_and_its_jobs_mount_and_use_them() -> None:
    (schedule,) = of_kind(render(private_store()), "BackupSchedule")
    validator("BackupSchedule").validate(schedule)
    s3 = schedule["spec"]["repo"]["s3"]
    assert (s3["port"], s3["caSecretRef"]) == (9000, {"name": "store-ca"})
    job = manifests.backup_job_spec("amrutam", schedule["spec"], "full")
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert "--repo1-storage-port=9000" in container["command"]
    assert f"--repo1-storage-ca-file={CA_FILE}" in container["command"]
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    assert volumes["s3-ca"]["secretName"] == "store-ca"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["s3-ca"] == "/etc/pgbackrest/s3-ca"


def test_without_a_port_or_ca_nothing_is_added() -> None:
    docs = render(IN_CLUSTER_POSTGRES)
    config = named(docs, "ConfigMap", "amrutam-pgbackrest-db")["data"]["pgbackrest.conf"]
    assert "repo1-storage-" not in config
    (schedule,) = of_kind(docs, "BackupSchedule")
    assert not {"port", "caSecretRef"} & set(schedule["spec"]["repo"]["s3"])
    command = manifests.backup_job_spec("amrutam", schedule["spec"], "full")["template"]["spec"]
    assert not any("repo1-storage-" in part for part in command["containers"][0]["command"])


def test_the_components_that_reach_the_store_may_use_its_port_and_no_others() -> None:
    policies = {
        p["metadata"]["name"].removeprefix("amrutam-egress-"): p
        for p in of_kind(render(private_store()), "NetworkPolicy")
        if p["metadata"]["name"].startswith("amrutam-egress-")
    }
    reaching = {
        name
        for name, policy in policies.items()
        if {"port": 9000, "protocol": "TCP"} in policy["spec"]["egress"][1]["ports"]
    }
    assert reaching == {"operator", "postgresql"}


def test_a_changed_repository_restarts_the_database_so_its_wal_follows() -> None:
    """N9: pgbackrest.conf is a subPath mount, never refreshed: after a change of the
    repository the database archived to the old one while the Jobs used the new one."""

    def checksum(values: dict[str, Any]) -> str:
        pod = named(render(values), "StatefulSet", "amrutam-postgresql")["spec"]["template"]
        return str(pod["metadata"]["annotations"]["checksum/pgbackrest"])

    first = checksum(IN_CLUSTER_POSTGRES)
    assert checksum(copy.deepcopy(IN_CLUSTER_POSTGRES)) == first  # stable for the same values
    assert checksum(private_store()) != first
    moved = copy.deepcopy(IN_CLUSTER_POSTGRES)
    moved["backups"]["repo"]["s3"]["bucket"] = "amrutam-backups-eu"
    assert checksum(moved) != first
