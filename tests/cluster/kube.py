"""The real cluster's command-line clients, as a platform engineer drives them: kubectl
and Helm from `make cluster`'s build, with its kubeconfig."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("CLUSTER_STATE", "/var/lib/amrutam-cluster"))
KUBECONFIG = STATE / "kubeconfig" / "admin.conf"
BIN = STATE / "bin"
NODE_IP = "10.245.0.1"  # hack/cluster/network.env
NAMESPACE = "amrutam"
RELEASE = "amrutam"
CHART = Path(__file__).resolve().parents[2] / "charts" / "amrutam"
VALUES = Path(__file__).with_name("values.yaml")  # the chart's values in these tests


def _run(program: str, args: tuple[str, ...], check: bool, timeout: float, stdin: str) -> str:
    done = subprocess.run(
        [str(BIN / program), "--kubeconfig", str(KUBECONFIG), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{program} {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout if check else done.stdout + done.stderr


def kubectl(*args: str, check: bool = True, timeout: float = 120, input_json: Any = None) -> str:
    stdin = "" if input_json is None else json.dumps(input_json)
    return _run("kubectl", args, check, timeout, stdin)


def helm(*args: str, check: bool = True, timeout: float = 900) -> str:
    return _run("helm", args, check, timeout, "")


def upgrade(chart: Path, *args: str) -> str:
    """`helm upgrade --wait` of the release to ``chart`` with these value arguments."""
    return helm(
        "upgrade", RELEASE, str(chart), "--namespace", NAMESPACE, *args,
        "--wait", "--timeout", "10m",
    )  # fmt: skip


def get(kind: str, name: str = "", namespace: str = NAMESPACE, **selectors: str) -> Any:
    """``kubectl get -o json``: one object, or the list's items."""
    args = ["get", kind, *([name] if name else []), "-n", namespace, "-o", "json"]
    if selectors:
        args += ["-l", ",".join(f"{k}={v}" for k, v in selectors.items())]
    data = json.loads(kubectl(*args))
    return data if name else data["items"]


def component(name: str) -> dict[str, str]:
    """The chart's selector labels of one component."""
    return {"app.kubernetes.io/instance": RELEASE, "app.kubernetes.io/component": name}


def pods_of(name: str) -> dict[str, str]:
    """A component's running pods: name -> uid."""
    return {
        pod["metadata"]["name"]: pod["metadata"]["uid"]
        for pod in get("pods", **component(name))
        if pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")
    }


def wait_until(check: Callable[[], Any], what: str, timeout: float = 180) -> Any:
    """Polls ``check`` until it returns something true; its last value otherwise fails."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {value!r})")
        time.sleep(1)
