"""Mounts a container runtime can make: ConfigMap, Secret and other API-data volumes are
read-only, so nothing can be mounted inside one (the mount point cannot be created there:
the container never starts). Checked for every pod the chart renders and every Job the
operator builds from the chart's BackupSchedule; `make image-test` runs them for real."""

from __future__ import annotations

from typing import Any

import pytest
from amrutam_operator import manifests

from tests.chart.rendering import named, render
from tests.chart.test_chart import VALUE_SETS, pod_specs

READ_ONLY_KINDS = ("configMap", "secret", "projected", "downwardAPI")


def nested_in_read_only(pod: dict[str, Any]) -> list[str]:
    kinds = {v["name"]: next(iter(set(v) - {"name"})) for v in pod.get("volumes", [])}
    found = []
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        mounts = container.get("volumeMounts", [])
        read_only = [
            m["mountPath"].rstrip("/") + "/"
            for m in mounts
            if kinds.get(m["name"]) in READ_ONLY_KINDS and not m.get("subPath")
        ]
        found += [
            f"{container['name']}: {m['mountPath']}"
            for m in mounts
            for directory in read_only
            if m["mountPath"].startswith(directory)
        ]
    return found


def operator_jobs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    schedules = [d for d in docs if d["kind"] == "BackupSchedule"]
    if not schedules:
        return []
    schedule = named(docs, "BackupSchedule", schedules[0]["metadata"]["name"])
    spec = schedule["spec"]
    restore = {"target": {"latest": True}, "into": {"persistentVolumeClaim": {"name": "r"}}}
    return [
        ("backup Job", manifests.backup_job_spec("amrutam", spec, "full")["template"]),
        ("restore Job", manifests.restore_job("r", 1, restore, schedule)["spec"]["template"]),
        ("drill Job", manifests.drill_job_spec("amrutam", spec)["template"]),
    ]


@pytest.mark.parametrize("values", sorted(VALUE_SETS))
def test_no_volume_is_mounted_inside_a_read_only_volume(values: str) -> None:
    docs = render(VALUE_SETS[values])
    for name, template in pod_specs(docs) + operator_jobs(docs):
        assert nested_in_read_only(template["spec"]) == [], name


def test_the_rule_catches_a_certificate_inside_the_configuration_volume() -> None:
    pod = {
        "volumes": [{"name": "config", "configMap": {"name": "c"}}, {"name": "tls", "secret": {}}],
        "containers": [
            {
                "name": "pgbackrest",
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/pgbackrest"},
                    {"name": "tls", "mountPath": "/etc/pgbackrest/tls"},
                ],
            }
        ],
    }
    assert nested_in_read_only(pod) == ["pgbackrest: /etc/pgbackrest/tls"]
