"""The real cluster (`make cluster`), a Redis outside it, and the chart installed into it
with the real Helm, once for the session."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.backup.conftest import BUCKET, KEYS, certificates, s3, s3_server
from tests.cluster.kube import (
    CHART,
    FIGURES,
    INGRESS_HOST,
    KUBECONFIG,
    NAMESPACE,
    NODE_IP,
    RELEASE,
    VALUES,
    exists,
    get,
    helm,
    kubectl,
    succeeded,
    wait_until,
)

# On the Secrets the team makes before installing (the release never owns them).
GIVEN = "test.amrutam.io/given"
# Where pods reach the object store: the values file's backups.repo.s3 endpoint and port.
STORE_NAMESPACE, STORE_HOST, STORE_PORT = "object-store", "s3.object-store.svc", 9000


@pytest.fixture(scope="session")
def cluster() -> None:
    if not KUBECONFIG.exists():
        pytest.fail("no cluster: `make cluster-test` starts one (`make cluster` alone)")
    assert kubectl("get", "--raw", "/readyz") == "ok"


@pytest.fixture(scope="session")
def redis_password(cluster: None) -> Iterator[str]:
    """Redis on the node's address, where pods reach it as they would a managed Redis."""
    password = secrets.token_hex(16)
    workdir = Path(tempfile.mkdtemp(prefix="amrutam-cluster-redis-"))
    binary = shutil.which("redis-server")
    assert binary, "redis-server is installed by `make install`"
    subprocess.run(
        [binary, "--bind", NODE_IP, "--port", "6379", "--requirepass", password,
         "--save", "", "--appendonly", "no", "--daemonize", "yes", "--dir", str(workdir),
         "--pidfile", str(workdir / "redis.pid"), "--logfile", str(workdir / "redis.log")],
        check=True,
    )  # fmt: skip
    yield password
    subprocess.run(
        ["redis-cli", "-h", NODE_IP, "-a", password, "--no-auth-warning", "shutdown", "nosave"],
        capture_output=True,
    )
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def object_store(cluster: None) -> Iterator[str]:
    """An S3-compatible store outside the cluster, under a private CA (moto, on the
    node's address), that pods reach by name: a Service whose endpoint is that address,
    as a company's MinIO or a cloud endpoint would be. Yields the CA certificate."""
    workdir = Path(tempfile.mkdtemp(prefix="amrutam-cluster-s3-"))
    certs = certificates(workdir / "certs", host=STORE_HOST)
    tls = (Path(certs["server_cert"]), Path(certs["server_key"]))
    # On the port pods name (values.yaml): NetworkPolicies judge a connection by the port
    # it reaches after the Service's translation, so the chart's egress port must be it.
    with s3_server(workdir, NODE_IP, tls, STORE_PORT) as port:
        s3(port, NODE_IP).create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        service = STORE_HOST.split(".")[0]
        kubectl("apply", "-f", "-", input_json=_list(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": STORE_NAMESPACE}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": service, "namespace": STORE_NAMESPACE},
             "spec": {"ports": [{"name": "https", "port": STORE_PORT, "targetPort": port}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": service, "namespace": STORE_NAMESPACE,
                          "labels": {"kubernetes.io/service-name": service}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": [NODE_IP]}],
             "ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
        ))  # fmt: skip
        yield Path(certs["ca_file"]).read_text()
        kubectl("delete", "namespace", STORE_NAMESPACE, "--wait=false")
    shutil.rmtree(workdir, ignore_errors=True)


def _list(*items: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(items)}


def _secret(name: str, data: dict[str, str], kind: str = "Opaque") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": kind,
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {GIVEN: "true"}},
            "stringData": data}  # fmt: skip


@pytest.fixture(scope="session")
def ingress_certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The ingress's certificate for its host, under a CA of the tests' own: clients
    verify the edge with ``["ca_file"]``."""
    return certificates(tmp_path_factory.mktemp("ingress") / "certs", host=INGRESS_HOST)


def _release_secrets(workdir: Path, store_ca: str, edge: dict[str, str]) -> dict[str, Any]:
    """What a platform team creates before installing with backups (values.yaml names
    them): the pgBackRest TLS pair, the store's keys and CA, a registry's pull secret,
    the ingress's certificate."""
    certs = certificates(workdir / "pgbackrest", host=f"{RELEASE}-postgresql")
    return _list(
        _secret("amrutam-pgbackrest-tls", {
            "tls.crt": Path(certs["both_cert"]).read_text(),
            "tls.key": Path(certs["both_key"]).read_text(),
            "ca.crt": Path(certs["ca_file"]).read_text(),
        }),
        _secret("amrutam-backup-s3", {
            "key": KEYS["PGBACKREST_REPO1_S3_KEY"],
            "secret": KEYS["PGBACKREST_REPO1_S3_KEY_SECRET"],
        }),
        _secret("object-store-ca", {"ca.crt": store_ca}),
        _secret("amrutam-registry", {".dockerconfigjson": '{"auths": {}}'},
                "kubernetes.io/dockerconfigjson"),
        _secret("amrutam-ingress-tls", {
            "tls.crt": Path(edge["server_cert"]).read_text(),
            "tls.key": Path(edge["server_key"]).read_text(),
        }, "kubernetes.io/tls"),
    )  # fmt: skip


@pytest.fixture(scope="session")
def release(
    redis_password: str, object_store: str, ingress_certificates: dict[str, str]
) -> Iterator[str]:
    """The release, installed with `helm install --wait` into a namespace that enforces
    the `restricted` Pod Security Standard, with backups to the object store."""
    kubectl("create", "namespace", NAMESPACE)
    kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    workdir = Path(tempfile.mkdtemp(prefix="amrutam-cluster-release-"))
    given = _release_secrets(workdir, object_store, ingress_certificates)
    kubectl("apply", "-f", "-", input_json=given)
    helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(VALUES),
        "--set", f"secrets.redisPassword={redis_password}", "--wait", "--timeout", "10m",
    )  # fmt: skip
    yield RELEASE
    if RELEASE in helm("list", "--namespace", NAMESPACE, "--short"):
        helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
    kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s")
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def first_backup(release: str) -> dict[str, Any]:
    """The first full backup, which the operator takes by itself on a new installation's
    empty repository; its Job."""
    name = f"{release}-first"
    status = wait_until(
        lambda: exists("job", name) and succeeded(name), f"{name} succeeds", timeout=600
    )
    took = datetime.fromisoformat(status["completionTime"]) - datetime.fromisoformat(
        status["startTime"]
    )
    FIGURES["first full backup Job s"] = took.total_seconds()
    return dict(get("job", name))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("figures from the cluster")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
