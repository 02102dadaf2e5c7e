"""The real cluster (`make cluster`), a Redis outside it, and the chart installed into it
with the real Helm, once for the session."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.kube import (
    CHART,
    KUBECONFIG,
    NAMESPACE,
    NODE_IP,
    RELEASE,
    VALUES,
    helm,
    kubectl,
)


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
def release(redis_password: str) -> Iterator[str]:
    """The release, installed with `helm install --wait` into a namespace that enforces
    the `restricted` Pod Security Standard."""
    kubectl("create", "namespace", NAMESPACE)
    kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", str(VALUES),
        "--set", f"secrets.redisPassword={redis_password}", "--wait", "--timeout", "10m",
    )  # fmt: skip
    yield RELEASE
    if RELEASE in helm("list", "--namespace", NAMESPACE, "--short"):
        helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
    kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s")
