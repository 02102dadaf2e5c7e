"""The platform under load as clients reach it: the SLO gate's short form (`make slo`
with SLO_PROFILE=cluster) through the ingress, and the API's HorizontalPodAutoscaler
adding a replica on the CPU that metrics-server reports, then removing it once the load
stops (values.yaml shortens the scale-down window to 20 s).

One load generator is many users behind one address, so the release is first upgraded
with the per-address limits raised, as `make slo` does for its local API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.kube import (
    CHART,
    FIGURES,
    INGRESS_HOST,
    NAMESPACE,
    RELEASE,
    get,
    kubectl,
    upgrade,
    wait_until,
)

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("release"), pytest.mark.timeout(1500)]
ROOT = Path(__file__).resolve().parents[2]
DOCTORS, PATIENTS, DAYS = 200, 1_000, 3  # loadtests/run.py, profile "cluster"
UNLIMITED = "1000000/minute"
MIN_REPLICAS = 1  # values.yaml: api.autoscaling


def _replicas() -> tuple[int, int]:
    """(the HPA's current replicas, the API pods ready)."""
    hpa = get("hpa", f"{RELEASE}-api")
    ready = get("deployment", f"{RELEASE}-api")["status"].get("readyReplicas", 0)
    return hpa["status"].get("currentReplicas", 0), ready


def _reads_cpu() -> bool:
    metrics = get("hpa", f"{RELEASE}-api")["status"].get("currentMetrics") or []
    return any(m.get("resource", {}).get("current", {}).get("averageUtilization") is not None
               for m in metrics)  # fmt: skip


def _seed() -> float:
    """The profile's data, seeded by a one-off pod as the migration Job runs (the API's
    pods never get the administrators' database URL): the API pod's template with that
    URL added, under the migration's labels so that the NetworkPolicies let it through."""
    template = get("deployment", f"{RELEASE}-api")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    secret = next(e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]
                  if "secretKeyRef" in e.get("valueFrom", {}))  # fmt: skip
    container = {
        **{k: container[k] for k in ("image", "imagePullPolicy", "securityContext", "envFrom",
                                     "volumeMounts")
           if k in container},
        "name": "seed",
        "command": ["amrutam", "seed", f"--doctors={DOCTORS}", f"--patients={PATIENTS}",
                    f"--days={DAYS}"],
        "env": [*container["env"], {"name": "AMRUTAM_ENVIRONMENT", "value": "test"},
                {"name": "AMRUTAM_DATABASE_ADMIN_URL", "valueFrom": {"secretKeyRef": {
                    "name": secret, "key": "AMRUTAM_DATABASE_ADMIN_URL"}}}],
    }  # fmt: skip
    labels = {**template["metadata"]["labels"], "app.kubernetes.io/component": "migrate"}
    kubectl("apply", "-f", "-", input_json={
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "seed", "namespace": NAMESPACE, "labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [container],
                 "securityContext": template["spec"].get("securityContext", {}),
                 "volumes": template["spec"].get("volumes", [])},
    })  # fmt: skip
    started = time.monotonic()
    phase = wait_until(
        lambda: (
            get("pod", "seed")["status"].get("phase") in ("Succeeded", "Failed")
            and get("pod", "seed")["status"]["phase"]
        ),
        "the seeding pod ends",
        timeout=600,
    )
    took = time.monotonic() - started
    logs = kubectl("logs", "-n", NAMESPACE, "seed", check=False)
    kubectl("delete", "pod", "seed", "-n", NAMESPACE, "--wait=false")
    assert phase == "Succeeded", logs
    return round(took)


class Timeline:
    """The API's replicas every two seconds, from the start of the load."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int, int]] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(2):
            self.points.append((time.monotonic() - self.started, *_replicas()))

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def load_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The SLO run through the ingress, with the replicas over it and after it."""
    upgrade(
        CHART, "--reuse-values", "--set", "ingress.limits.requestsPerSecond=0",
        "--set", f"config.extra.RATE_LIMIT_ANONYMOUS={UNLIMITED}",
        "--set", f"config.extra.RATE_LIMIT_LOGIN_IP={UNLIMITED}",
        "--set", f"config.extra.RATE_LIMIT_MFA_IP={UNLIMITED}",
    )  # fmt: skip
    FIGURES["seeding for the SLO run, s"] = _seed()
    # A quiet start: the upgrade's new pods settle, and the HPA reads their CPU.
    wait_until(lambda: _reads_cpu() and _replicas() == (MIN_REPLICAS, MIN_REPLICAS),
               "the API at its minimum replicas, its CPU read", timeout=300)  # fmt: skip
    results = tmp_path_factory.mktemp("slo")
    with Timeline() as timeline:
        run = subprocess.run(
            [sys.executable, "-m", "loadtests.run", "--profile", "cluster",
             "--base-url", f"https://{INGRESS_HOST}"],
            cwd=ROOT, env={**os.environ, "SLO_RESULTS": str(results)},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        load_ended = time.monotonic() - timeline.started
        back = None  # when the API is at its minimum again, if within 5 minutes
        while back is None and time.monotonic() - timeline.started < load_ended + 300:
            if _replicas() == (MIN_REPLICAS, MIN_REPLICAS):
                back = time.monotonic() - timeline.started
            time.sleep(1)
    verdict = json.loads((results / "slo.json").read_text())
    return {"run": run, "verdict": verdict, "points": timeline.points, "ended": load_ended,
            "back": back}  # fmt: skip


def test_the_slo_gate_passes_through_the_ingress(load_run: dict[str, Any]) -> None:
    run, figures = load_run["run"], load_run["verdict"]["figures"]
    for name in ("read_p50_ms", "read_p95_ms", "write_p50_ms", "write_p95_ms", "p99_ms"):
        FIGURES[f"SLO through the ingress: {name}"] = round(figures[name], 1)
    FIGURES["SLO through the ingress: requests"] = figures["requests"]
    FIGURES["SLO through the ingress: error rate"] = figures["error_rate"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert load_run["verdict"]["ok"], load_run["verdict"]["missed"]


def test_the_api_autoscales_out_under_load_and_back_in_after_it(load_run: dict[str, Any]) -> None:
    points, ended = load_run["points"], load_run["ended"]
    during = [(t, hpa, ready) for t, hpa, ready in points if t <= ended]
    out = next(((t, ready) for t, _, ready in during if ready > MIN_REPLICAS), None)
    assert out, f"no replica was added during the load: {during}"
    assert load_run["back"], f"still more than one pod 5 minutes after the load: {points}"
    FIGURES["HPA: a second API pod ready after the load began, s"] = round(out[0])
    FIGURES["HPA: most API pods ready during the load"] = max(r for _, _, r in during)
    FIGURES["HPA: back to one pod after the load ended, s"] = round(load_run["back"] - ended)
    FIGURES["HPA: replicas over time (s: current/ready)"] = " ".join(
        f"{t:.0f}:{hpa}/{ready}" for t, hpa, ready in points[::5]
    )
