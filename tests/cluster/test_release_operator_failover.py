"""Two operator replicas in the real cluster: one acts, the other stands by; when the
active pod is deleted, the other acts on the next request. Restores one replica after.
Runs after test_release.py (its upgrades would change the release that one inspects
as installed), before test_restore.py."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.cluster.kube import (
    CHART,
    FIGURES,
    NAMESPACE,
    RELEASE,
    component,
    exists,
    get,
    kubectl,
    upgrade,
    wait_until,
)

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.usefixtures("release", "first_backup"),
    pytest.mark.timeout(900),
]


def roles() -> dict[str, str]:
    """Each running operator pod's own word on its role (its liveness endpoint)."""
    found = {}
    for pod in get("pods", **component("operator")):
        if pod["status"].get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
            continue
        try:
            health = httpx.get(f"http://{pod['status']['podIP']}:8080/healthz", timeout=5)
        except httpx.HTTPError:
            continue
        if health.status_code == 200:
            found[pod["metadata"]["name"]] = health.json().get("watching", "")
    return found


@pytest.fixture
def two_replicas() -> Iterator[None]:
    upgrade(CHART, "--reuse-values", "--set", "operator.replicas=2")
    try:
        yield
    finally:
        upgrade(CHART, "--reuse-values", "--set", "operator.replicas=1")


def test_when_the_active_operator_is_deleted_the_standby_acts(two_replicas: None) -> None:
    settled: dict[str, str] = wait_until(
        lambda: (r := roles()) and sorted(r.values()) == ["active", "standby"] and r,
        "one operator active, one standing by",
    )
    (active,) = [name for name, role in settled.items() if role == "active"]
    started = time.monotonic()
    kubectl("delete", "pod", active, "-n", NAMESPACE, "--wait=true")
    FIGURES["operator pod stopped s"] = round(time.monotonic() - started, 1)
    asked = time.monotonic()
    value = datetime.now(UTC).isoformat()
    kubectl(
        "annotate", "-n", NAMESPACE, "backupschedule", RELEASE, "--overwrite",
        "platform.amrutam.io/backup-type=incr", f"platform.amrutam.io/backup-now={value}",
    )  # fmt: skip
    wait_until(
        lambda: get("backupschedule", RELEASE)["status"].get("oneOffBackup") == value,
        "an operator acts on the request",
    )
    FIGURES["operator takeover: request to action s"] = round(time.monotonic() - asked, 1)
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]  # backups.backup_now's name
    assert exists("job", f"{RELEASE}-now-{digest}")
    # Exactly one acts afterwards, whichever it is (the replacement pod may outrank).
    after = wait_until(lambda: (r := roles()) and len(r) == 2 and r, "two operators again")
    assert sorted(after.values()) == ["active", "standby"], after
