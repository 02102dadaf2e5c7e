"""`helm uninstall` of the release test_release.py installed (this module runs after it):
the pre-delete hook removes the custom resources while the operator still runs, and what
is left is exactly what the release's NOTES say."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import GIVEN
from tests.cluster.kube import NAMESPACE, RELEASE, get, helm, kubectl, wait_until

# Installs and upgrades wait on a real cluster: minutes on a slow machine, not the suite's 300 s.
pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("release"), pytest.mark.timeout(900)]

CUSTOM = "auditpartitionpolicies,scalingpolicies,backupschedules,pointintimerestores"
KINDS = (
    "deployments,statefulsets,jobs,cronjobs,pods,services,configmaps,secrets,"
    "persistentvolumeclaims,serviceaccounts,roles,rolebindings,networkpolicies,"
    "poddisruptionbudgets,horizontalpodautoscalers"
)
# What every namespace has of its own.
CLUSTER_MADE = {"configmap/kube-root-ca.crt", "serviceaccount/default"}


def test_the_api_server_kept_every_status_field_the_operator_wrote() -> None:
    """A structural schema silently prunes what it does not declare. kopf reads back each
    status it merge-patches and logs any field that did not stick; the operator has run
    since the last upgrade (backups, a drill, two restores and their hand-overs)."""
    logs = kubectl(
        "logs", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator",
        "--all-containers", "--tail=-1",
    )  # fmt: skip
    assert "Timer 'reconcile' succeeded" in logs  # the logs are the operator's, and it ran
    assert "finished with inconsistencies" not in logs, [
        line for line in logs.splitlines() if "inconsistencies" in line
    ]


def test_uninstall_removes_the_custom_resources_first_and_leaves_what_the_notes_say() -> None:
    notes = helm("get", "notes", RELEASE, "--namespace", NAMESPACE)
    assert kubectl("get", CUSTOM, "-n", NAMESPACE, "-o", "name").split(), "nothing to remove"
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m")
    # With the operator gone first, a resource would hang on its finalizer for ever.
    assert kubectl("get", CUSTOM, "-n", NAMESPACE, "-o", "name") == ""
    ran = kubectl(
        "get", "events", "-n", NAMESPACE, "-o", "jsonpath={.items[*].reason}",
        "--field-selector", f"involvedObject.kind=Job,involvedObject.name={RELEASE}-cleanup",
    ).split()  # fmt: skip
    assert "Completed" in ran, ran

    def left() -> set[str]:
        names = kubectl("get", KINDS, "-n", NAMESPACE, "-o", "name").split()
        kinds = {
            f"{kind.split('.')[0]}/{name}" for kind, _, name in (n.partition("/") for n in names)
        }
        return kinds - CLUSTER_MADE

    wait_until(lambda: not any(n.startswith("pod/") for n in left()), "the release's pods are gone")
    given = {f"secret/{s['metadata']['name']}" for s in get("secrets", **{GIVEN: "true"})}
    restored = {
        f"persistentvolumeclaim/{c['metadata']['name']}"
        for c in get("pvc")
        if "platform.amrutam.io/restore" in c["metadata"].get("labels", {})
    }
    named = {
        f"configmap/{RELEASE}-env",
        f"secret/{RELEASE}-env",
        f"persistentvolumeclaim/data-{RELEASE}-postgresql-0",
    }
    # The team's own Secrets, and the claims restores made, which the notes name by label.
    assert left() == named | given | restored
    for name in named:
        assert name.split("/")[1] in notes, (name, notes)
    assert not restored or "platform.amrutam.io/restore" in notes, notes
    # Helm never deletes CRDs, as the notes say.
    assert "scalingpolicies.platform.amrutam.io" in kubectl("get", "crds", "-o", "name")
