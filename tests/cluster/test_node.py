"""The test cluster itself keeps its promises (hack/cluster/README.md): pods get storage
and cluster DNS, and nothing a pod sends can leave this machine. No packet is sent
outside to check it: the resolver's answer and the kernel's rules are read instead."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.cluster.kube import get, kubectl, wait_until

pytestmark = pytest.mark.cluster
BUSYBOX = "localhost/amrutam-cluster/busybox:1.35"  # hack/cluster/network.env
POD_CIDR, SERVICE_CIDR = "10.246.0.0/16", "10.247.0.0/16"


@pytest.fixture
def namespace(cluster: None) -> Iterator[str]:
    name = f"node-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def test_a_restricted_pod_writes_to_a_provisioned_volume_and_resolves_only_cluster_names(
    namespace: str,
) -> None:
    script = (
        "touch /data/written && ls -n /data/written && "
        "busybox nslookup kubernetes.default.svc.cluster.local; "
        "busybox nslookup example.com; true"
    )
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data", "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "10Mi"}},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "probe", "namespace": namespace},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 999,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "probe",
                            "image": BUSYBOX,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", script],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                },
            },
        ],
    }
    kubectl("apply", "-f", "-", input_json=manifest)
    wait_until(
        lambda: get("pod", "probe", namespace=namespace)["status"].get("phase") == "Succeeded",
        "the probe pod ran",
    )
    out = kubectl("logs", "-n", namespace, "probe")
    assert " 999 " in out.splitlines()[0], out  # written as the pod's own user
    assert "Address: 10.247.0.1" in out, out  # the API's Service, by name
    assert "can't find example.com: SERVFAIL" in out, out  # CoreDNS forwards nowhere


def _rules(table: str) -> list[str]:
    done = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True)
    return done.stdout.splitlines()


def test_pod_and_service_traffic_towards_the_uplink_is_dropped_and_never_masqueraded() -> None:
    uplink = subprocess.run(
        ["ip", "-o", "route", "show", "default"], capture_output=True, text=True, check=True
    ).stdout.split()[4]
    mangle = _rules("mangle")
    for cidr in (POD_CIDR, SERVICE_CIDR):
        for chain in ("FORWARD", "POSTROUTING"):
            assert f"-A {chain} -s {cidr} -o {uplink} -j DROP" in mangle, (chain, cidr)
    # The bridge plugin is told not to masquerade; kube-proxy masquerades only packets it
    # marked (hairpin and host-to-Service), never by source range.
    nat = _rules("nat")
    assert not [r for r in nat if "MASQUERADE" in r and ("10.246." in r or "CNI-" in r)], nat
