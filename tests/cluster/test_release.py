"""The chart's release in the real cluster, in the order a platform team lives it: install
(with the chart's own PostgreSQL), use through the Service, inspect with kubectl, upgrade.
Uninstall is test_uninstall.py's, which runs after this module."""

from __future__ import annotations

import base64
import re
import shutil
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from amrutam_operator import kube as operator_kube

from tests.cluster.clients import doctor_with_a_slot, patient
from tests.cluster.kube import (
    CHART,
    NAMESPACE,
    RELEASE,
    VALUES,
    api_url,
    component,
    get,
    helm,
    kubectl,
    pods_of,
    printed,
    sql,
    upgrade,
    wait_until,
)
from tests.helpers import PASSWORD

# Installs and upgrades wait on a real cluster: minutes on a slow machine, not the suite's 300 s.
pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("release"), pytest.mark.timeout(900)]
REVISION = "platform.amrutam.io/schema-revision"


def test_install_with_the_in_cluster_database_migrates_and_every_workload_is_ready() -> None:
    """N5: with postgresql.enabled the migration is not a pre-install hook (it would run
    before the database exists, and `helm install` could never succeed)."""
    migrate = get("job", f"{RELEASE}-migrate-install")
    assert migrate["status"].get("succeeded") == 1, migrate["status"]
    assert "helm.sh/hook" not in migrate["metadata"].get("annotations", {})
    # Waited for, not read once: the tests before this one (the ingress's) load the API,
    # and its HPA may be starting a second pod right now.
    wait_until(
        lambda: all(
            d["status"].get("readyReplicas") == d["spec"]["replicas"] for d in get("deployments")
        ),
        "every Deployment has its replicas ready",
    )
    database = get("statefulset", f"{RELEASE}-postgresql")
    assert database["status"].get("readyReplicas") == 1, database["status"]
    claim = get("pvc", f"data-{RELEASE}-postgresql-0")
    assert claim["status"]["phase"] == "Bound"


def test_helm_test_reaches_the_api_through_its_service() -> None:
    out = helm("test", RELEASE, "--namespace", NAMESPACE, timeout=300, check=False)
    logs = kubectl("logs", "-n", NAMESPACE, f"{RELEASE}-test", check=False)  # if it stayed
    assert re.search(rf"TEST SUITE:\s+{RELEASE}-test\n.*Phase:\s+Succeeded", out, re.S), out + logs
    assert not get("pods", **component("test")), "a test pod that passed is left behind"


def test_every_pod_is_admitted_under_the_restricted_pod_security_standard() -> None:
    namespace = get("namespace", NAMESPACE, namespace="")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # A pod the standard refuses never exists: its controller records FailedCreate.
    refusals = [
        event["message"]
        for event in get("events")
        if event["reason"] in ("FailedCreate", "FailedCreatePodSandBox")
    ]
    assert refusals == []
    # The admission plugin itself, asked with a server-side dry run, agrees for each pod.
    for pod in get("pods"):
        if pod["status"].get("phase") == "Succeeded":
            continue
        spec = {k: pod[k] for k in ("apiVersion", "kind", "spec")}
        spec["metadata"] = {"name": f"psa-{uuid.uuid4().hex[:8]}", "namespace": NAMESPACE}
        spec["spec"].pop("nodeName", None)
        out = kubectl("create", "--dry-run=server", "-f", "-", "-o", "name", input_json=spec)
        assert out.startswith("pod/"), out


def _can(account: str, group: str, resource: str, verb: str) -> bool:
    """The API server's own authorizer, asked as the release's service account."""
    plural, _, sub = resource.partition("/")
    target = f"{plural}.{group}" if group else plural
    answer = kubectl(
        "auth", "can-i", verb, target, *(["--subresource", sub] if sub else []),
        "-n", NAMESPACE, "--as", f"system:serviceaccount:{NAMESPACE}:{account}",
        check=False,
    )  # fmt: skip
    return answer.strip().splitlines()[0] == "yes"


def test_the_operator_may_make_every_call_it_makes_and_is_refused_outside_its_grant() -> None:
    account = f"{RELEASE}-operator"
    assert [call for call in sorted(operator_kube.CALLS) if not _can(account, *call)] == []
    for outside in (
        ("", "secrets", "list"),  # it reads the Secrets it is given, by name
        ("", "pods", "delete"),
        ("", "pods/exec", "create"),
        ("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "update"),
    ):
        assert not _can(account, *outside), outside
    # A real request outside the grant, made as the account, is refused by the API server.
    refused = kubectl(
        "get", "secrets", "-n", "kube-system", "--as",
        f"system:serviceaccount:{NAMESPACE}:{account}", check=False,
    )  # fmt: skip
    assert "Forbidden" in refused, refused


def test_register_log_in_and_book_through_the_service_and_the_worker_confirms() -> None:
    with httpx.Client(base_url=api_url(), timeout=30) as http:
        _, slot = doctor_with_a_slot(http)
        email = patient(http)
        login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        booked = http.post(
            "/v1/appointments/book",
            json={"slot_id": slot, "reason": "cluster test"},
            headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert booked.status_code == 201, booked.text
        appointment = booked.json()["id"]
    # beat relays the outbox; a worker pod delivers the confirmation.
    wait_until(
        lambda: (
            sql(
                "SELECT count(*) FROM notifications "
                f"WHERE appointment_id = '{appointment}' AND status = 'sent'"
            )
            != "0"
        ),
        "the worker sent the booking's confirmation",
    )


def test_kubectl_get_prints_each_custom_resource_with_real_values() -> None:
    policy = wait_until(
        lambda: [row for row in printed("auditpartitionpolicies") if row.get("READY") == "True"],
        "the AuditPartitionPolicy reports Ready",
    )[0]
    assert policy["INTERVAL"] == "monthly", policy
    assert int(policy["PARTITIONS"]) >= 4, policy  # the current month and 3 ahead
    scaling = wait_until(
        lambda: [row for row in printed("scalingpolicies") if row.get("READY") == "True"],
        "the ScalingPolicy reports Ready",
    )[0]
    assert scaling["TARGET"] == f"{RELEASE}-worker", scaling
    assert int(scaling["CURRENT"]) >= 1, scaling
    assert scaling["OBSERVED"] != "<none>", scaling


def test_an_upgrade_rolls_only_the_pods_whose_settings_changed_and_keeps_the_data() -> None:
    before = {name: pods_of(name) for name in ("api", "worker", "beat", "operator", "postgresql")}
    users = sql("SELECT count(*) FROM users")
    upgrade(CHART, "--reuse-values", "--set", "worker.concurrency=3")
    wait_until(
        lambda: pods_of("worker") and not set(pods_of("worker")) & set(before["worker"]),
        "the worker pods are replaced",
    )
    # No new pod (the API's HPA may have removed one meanwhile: a roll adds new ones).
    for name in ("api", "beat", "operator", "postgresql"):
        after = set(pods_of(name))
        assert after, name
        assert after <= set(before[name]), f"{name} pods were rolled by a worker-only change"
    assert sql("SELECT count(*) FROM users") == users
    with httpx.Client(base_url=api_url(), timeout=30) as http:
        assert http.get("/readyz").status_code == 200


def _leftover_hook_objects() -> list[str]:
    names = (f"{RELEASE}-secrets-given", f"{RELEASE}-secrets", f"{RELEASE}-crds")
    found = kubectl(
        "get", "secrets,serviceaccounts,roles,rolebindings,configmaps,jobs", "-n", NAMESPACE,
        "-o", "name",
    ).split()  # fmt: skip
    found += kubectl("get", "clusterroles,clusterrolebindings", "-o", "name").split()
    return [obj for obj in found if obj.split("/")[1].removesuffix(f"-{NAMESPACE}") in names]


def test_the_secrets_hook_leaves_no_helpers_and_keeps_a_password_left_out_later(
    redis_password: str,
) -> None:
    """N11: the given values' copy and the account that may create Secrets were hooks
    that stayed for ever; an outside service's password left out of a later upgrade's
    values was blanked in the Secret."""
    assert _leftover_hook_objects() == []
    # The values again, but without the Redis password given at install.
    upgrade(CHART, "--reset-values", "--values", str(VALUES))
    env = get("secret", f"{RELEASE}-env")["data"]
    assert base64.b64decode(env["REDIS_PASSWORD"]).decode() == redis_password
    with httpx.Client(base_url=api_url(), timeout=30) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
    assert _leftover_hook_objects() == []


def test_an_upgrade_whose_crds_changed_applies_them_and_leaves_an_operator_running(
    tmp_path: Path,
) -> None:
    """N8: Helm never upgrades crds/, and the new operator refuses older CRDs: the upgrade
    reported success while no operator ran. The pre-upgrade hook applies newer ones."""
    chart = tmp_path / "amrutam"
    shutil.copytree(CHART, chart)
    crd_file = chart / "crds" / "scalingpolicies.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    annotations = crd["metadata"]["annotations"]
    newer = int(annotations[REVISION]) + 1
    annotations[REVISION] = str(newer)
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    columns.insert(1, {"name": "Kind", "type": "string", "jsonPath": ".spec.targetRef.kind"})
    crd_file.write_text(yaml.safe_dump(crd))
    try:
        _upgrade_to_newer_crds(chart, newer)
    finally:  # the cluster's CRD as the chart has it, for the next install on this cluster
        kubectl("replace", "-f", str(CHART / "crds" / "scalingpolicies.yaml"))


def _revision() -> str:
    crd = get("crd", "scalingpolicies.platform.amrutam.io", namespace="")
    return str(crd["metadata"]["annotations"][REVISION])


def _upgrade_to_newer_crds(chart: Path, newer: int) -> None:
    upgrade(chart, "--reuse-values", "--set", "config.logLevel=DEBUG")
    assert _revision() == str(newer)
    assert "KIND" in kubectl("get", "scalingpolicies", "-n", NAMESPACE)
    # The new operator started on them (it refuses older ones) and stays ready.
    operator = get("deployment", f"{RELEASE}-operator")
    assert operator["status"].get("readyReplicas") == 1, operator["status"]
    # Back to the chart as it is: an older revision is never applied over a newer one.
    upgrade(CHART, "--reuse-values", "--set", "config.logLevel=INFO")
    assert _revision() == str(newer)
    assert _leftover_hook_objects() == []


def test_network_policies_with_other_dns_and_direct_load_balancers_are_accepted() -> None:
    """N7: DNS (NodeLocal DNSCache's address, OpenShift's port) and the API's direct
    sources are values; the API server accepts the policies they make (a server-side dry
    run: this cluster has no NetworkPolicy engine to enforce them yet)."""
    rendered = helm(
        "template", "check", str(CHART), "--namespace", NAMESPACE,  # beside the release's own
        "--show-only", "templates/networkpolicies.yaml",
        "--set", "networkPolicy.dns.to[0].ipBlock.cidr=169.254.20.10/32",
        "--set", "networkPolicy.dns.ports[0].port=5353",
        "--set", "networkPolicy.dns.ports[0].protocol=UDP",
        "--set", "networkPolicy.apiFrom[0].ipBlock.cidr=10.0.0.0/16",
    )  # fmt: skip
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    accepted = kubectl(
        "create", "--dry-run=server", "-n", NAMESPACE, "-o", "yaml", "-f", "-",
        input_json={"apiVersion": "v1", "kind": "List", "items": documents},
    )  # fmt: skip
    kept = {doc["metadata"]["name"]: doc["spec"] for doc in yaml.safe_load_all(accepted) if doc}
    assert kept["check-amrutam-egress-api"]["egress"][0] == {
        "to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}],
        "ports": [{"port": 5353, "protocol": "UDP"}],
    }
    sources = kept["check-amrutam-api-ingress"]["ingress"][0]["from"]
    assert {"ipBlock": {"cidr": "10.0.0.0/16"}} in sources
