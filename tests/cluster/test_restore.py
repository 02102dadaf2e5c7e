"""Point-in-time recovery in the real cluster, as docs/backup-restore.md runs it: a
PointInTimeRestore to a second, the hand-over of the release to the restored claim, the
platform serving that second's data through its API, and a second restore across the
new timeline. Runs after test_release.py, on the same release."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.cluster.kube import (
    CHART,
    FIGURES,
    NAMESPACE,
    RELEASE,
    api_url,
    get,
    kubectl,
    printed,
    sql,
    upgrade,
    wait_until,
)
from tests.helpers import PASSWORD, unique_email

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.usefixtures("release", "first_backup"),
    pytest.mark.timeout(1500),
]
CLAIM = "restored-before-b"


def api() -> httpx.Client:
    return httpx.Client(base_url=api_url(), timeout=30)


def register() -> str:
    email = unique_email("pitr")
    body = {"email": email, "password": PASSWORD, "full_name": "P", "role": "patient"}
    with api() as http:
        made = http.post("/v1/auth/register", json=body)
    assert made.status_code == 201, made.text
    return email


def logs_in(email: str) -> bool:
    with api() as http:
        answer = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 200


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def archived_past(moment: datetime) -> None:
    """WAL up to ``moment`` is in the repository (the segment holding it, closed now, is
    the archiver's last or older), and the operator's window says so."""
    segment = sql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_until(
        lambda: sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment,
        f"WAL segment {segment} archived",
        timeout=300,
    )
    wait_until(
        lambda: (
            (get("backupschedule", RELEASE)["status"].get("recoveryWindow") or {}).get("to", "")
            > iso(moment)
        ),
        f"the recovery window reaches past {iso(moment)}",
        timeout=300,
    )


def restore(name: str, claim: str, target: dict[str, Any]) -> dict[str, Any]:
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input_json={
        "apiVersion": "platform.amrutam.io/v1alpha1", "kind": "PointInTimeRestore",
        "metadata": {"name": name},
        "spec": {"backupScheduleRef": {"name": RELEASE}, "target": target,
                 "into": {"persistentVolumeClaim": {"name": claim, "storage": "1Gi"}}},
    })  # fmt: skip
    done: dict[str, Any] = wait_until(
        lambda: (
            (r := get("pointintimerestore", name)).get("status", {}).get("phase")
            in ("Succeeded", "Failed")
            and r
        ),
        f"the restore {name} ends",
        timeout=900,
    )
    job = done["status"].get("job", "")
    logs = kubectl("logs", "-n", NAMESPACE, f"job/{job}", "--all-containers", check=False)
    assert done["status"]["phase"] == "Succeeded", f"{done['status']}\n{logs}"
    return done


@pytest.fixture(scope="module")
def handed_over() -> dict[str, Any]:
    """User A, the target second, user B; a restore to that second; the hand-over."""
    before = register()
    time.sleep(1.5)
    target = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.5)
    after = register()
    archived_past(target)
    done = restore("before-b", CLAIM, {"time": iso(target)})
    FIGURES["restore s"] = done["status"]["recoverySeconds"]
    reached = datetime.fromisoformat(done["status"]["restoredTo"])
    FIGURES["recovery point before the target s"] = (target - reached).total_seconds()
    started = time.monotonic()
    # The runbook's hand-over, as docs/backup-restore.md writes it.
    upgrade(CHART, "--reuse-values", "--set", f"postgresql.existingClaim={CLAIM}")
    wait_until(lambda: _ready_api(), "the API answers ready on the restored database")
    FIGURES["hand-over s"] = time.monotonic() - started
    return {"target": target, "reached": reached, "before": before, "after": after}


def _ready_api() -> bool:
    try:
        with api() as http:
            return http.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def test_a_restore_to_a_second_reaches_it_and_kubectl_shows_it(
    handed_over: dict[str, Any],
) -> None:
    assert handed_over["reached"] <= handed_over["target"]
    row = next(r for r in printed("pointintimerestores") if r["NAME"] == "before-b")
    assert (row["PHASE"], row["CLAIM"], row["READY"]) == ("Succeeded", CLAIM, "True"), row
    assert row["TARGET"] == iso(handed_over["target"]), row
    assert row["RESTORED TO"] not in ("", "<none>"), row


def test_the_hand_over_serves_the_data_of_that_second_through_the_api(
    handed_over: dict[str, Any],
) -> None:
    """N4: the runbook's `helm upgrade --set postgresql.existingClaim` changed the
    StatefulSet's claim templates, which the API server refuses: the last step of every
    restore failed mid-incident. On a claim the database is another StatefulSet."""
    (database,) = get("statefulsets", **{"app.kubernetes.io/component": "postgresql"})
    volumes = database["spec"]["template"]["spec"]["volumes"]
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    ]
    assert claims == [CLAIM]
    assert logs_in(handed_over["before"])
    assert not logs_in(handed_over["after"])
    # The database the release was installed with keeps its volume, and its data.
    assert get("pvc", f"data-{RELEASE}-postgresql-0")["status"]["phase"] == "Bound"


def test_a_succeeded_restore_cannot_be_changed_to_run_again(
    handed_over: dict[str, Any],
) -> None:
    """N3: editing a succeeded restore started a new attempt that wiped its claim, which
    is by now the live database's volume. The API server refuses the edit."""
    refused = kubectl(
        "patch", "pointintimerestore", "before-b", "-n", NAMESPACE, "--type", "merge",
        "-p", json.dumps({"spec": {"target": {"time": iso(handed_over["reached"])}}}),
        check=False,
    )  # fmt: skip
    assert "a succeeded restore cannot change" in refused, refused
    assert get("pointintimerestore", "before-b")["metadata"]["generation"] == 1
    assert not get("jobs", **{"platform.amrutam.io/restore": "before-b"})[1:]


def test_a_second_restore_crosses_the_new_timeline_and_serves_again(
    handed_over: dict[str, Any],
) -> None:
    """N14: the restored database promoted with archiving off, so its timeline's history
    never reached the repository and a restore past the hand-over could not follow it."""
    later = register()  # on the restored database's new timeline
    archived_past(datetime.now(UTC))
    restore("after-hand-over", "restored-latest", {"latest": True})
    upgrade(CHART, "--reuse-values", "--set", "postgresql.existingClaim=restored-latest")
    wait_until(lambda: _ready_api(), "the API answers ready on the second restored database")
    assert logs_in(later)
    assert logs_in(handed_over["before"])
    assert not logs_in(handed_over["after"])
