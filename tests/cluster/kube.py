"""The real cluster's command-line clients, as a platform engineer drives them: kubectl
and Helm from `make cluster`'s build, with its kubeconfig."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("CLUSTER_STATE", "/var/lib/amrutam-cluster"))
KUBECONFIG = STATE / "kubeconfig" / "admin.conf"
BIN = STATE / "bin"
NODE_IP = "10.245.0.1"  # hack/cluster/network.env
CLIENT_IPS = ("10.245.0.8", "10.245.0.9")  # the same file: addresses clients send from
INGRESS_HOST = "api.amrutam.test"  # the same file and values.yaml: the ingress's name
NAMESPACE = "amrutam"
RELEASE = "amrutam"
CHART = Path(__file__).resolve().parents[2] / "charts" / "amrutam"
VALUES = Path(__file__).with_name("values.yaml")  # the chart's values in these tests
FIGURES: dict[str, float | str] = {}  # measured by the tests, printed at the end of the run


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


def sql(query: str) -> str:
    """psql in the database pod (whichever StatefulSet runs it: a restored claim's after
    a hand-over), as its superuser over the local socket."""
    (pod,) = pods_of("postgresql")
    return kubectl(
        "exec", "-n", NAMESPACE, pod, "-c", "postgresql", "--",
        "psql", "-U", "postgres", "-d", "amrutam", "-Atc", query,
    ).strip()  # fmt: skip


def printed(kind: str) -> list[dict[str, str]]:
    """`kubectl get KIND` as a person reads it: by column, blank cells included (kubectl
    pads every column to its widest cell, so a header's span is its column's)."""
    header, *rows = kubectl("get", kind, "-n", NAMESPACE).splitlines()
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {
            name: row[a:b].strip()
            for name, a, b in zip(names, starts, [*starts[1:], None], strict=True)
        }
        for row in rows
    ]


def condition(kind: str, name: str, type_: str) -> dict[str, Any]:
    """One condition of a resource's status ({} while it has none)."""
    found = get(kind, name).get("status", {}).get("conditions", [])
    return next((c for c in found if c["type"] == type_), {})


def succeeded(job: str) -> dict[str, Any] | None:
    """A Job's status once it succeeded; a failed Job fails the test with its logs."""
    status = get("job", job).get("status", {})
    failed = [c for c in status.get("conditions", []) if c["type"] == "Failed"]
    logs = kubectl("logs", "-n", NAMESPACE, f"job/{job}", "--all-containers", check=False)
    assert not failed, f"{job} failed: {failed}\n{logs}"
    return dict(status) if status.get("succeeded") else None


def exists(kind: str, name: str) -> bool:
    return bool(kubectl("get", kind, name, "-n", NAMESPACE, "--ignore-not-found", "-o", "name"))


def api_url() -> str:
    """The API's Service, as the node reaches it."""
    service = get("service", f"{RELEASE}-api")
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
