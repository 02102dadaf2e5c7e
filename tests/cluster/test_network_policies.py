"""The chart's NetworkPolicies as an enforcing engine applies them (kube-router's
firewall, make cluster): one test per path, what the platform needs passes and what it
does not is refused. Each refused path is to a port that answers someone else, so a
refusal is the policy's and not a closed port's.

A connection is tried from inside a pod with the application image's Python; the
engine answers a denied one with "connection refused", like a closed port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.clients import through_ingress
from tests.cluster.kube import (
    CLIENT_IPS,
    NAMESPACE,
    NODE_IP,
    RELEASE,
    component,
    get,
    kubectl,
    pods_of,
    wait_until,
)

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("release"), pytest.mark.timeout(600)]
# The values' networkPolicy.monitoring namespace (the chart's default), and any other.
MONITORING, ELSEWHERE = "monitoring", "elsewhere"
DATABASE = (f"{RELEASE}-postgresql.{NAMESPACE}.svc", 5432)  # from any namespace
REDIS = (NODE_IP, 6379)  # values.yaml: a Redis outside the cluster, as a managed one
KUBE_API = ("kubernetes.default.svc", 443)
API_PORT, API_METRICS, OPERATOR_METRICS = 8000, 9807, 9810
TRY = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=4).close()
    print("open")
except OSError as error:
    print("closed", error)
"""


@pytest.fixture(scope="module")
def strangers() -> Iterator[dict[str, str]]:
    """A pod in the monitoring namespace and one in another namespace: namespace -> pod."""
    (image,) = {c["image"] for c in get("deployment", f"{RELEASE}-api")["spec"]["template"][
        "spec"]["containers"]}  # fmt: skip
    pods = {}
    for namespace in (MONITORING, ELSEWHERE):
        kubectl("create", "namespace", namespace)
        kubectl("apply", "-f", "-", input_json={
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "probe", "namespace": namespace},
            "spec": {"containers": [{
                "name": "probe", "image": image, "imagePullPolicy": "Never",
                "command": ["python", "-c", "import time; time.sleep(86400)"],
            }], "terminationGracePeriodSeconds": 0},
        })  # fmt: skip
        pods[namespace] = "probe"
    for namespace in pods:
        kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/probe", "--timeout=120s")
    yield pods
    for namespace in pods:
        kubectl("delete", "namespace", namespace, "--wait=false")


def reaches(where: tuple[str, str], target: tuple[str, int]) -> bool:
    """Whether a TCP connection from (namespace, pod) to (host, port) opens."""
    namespace, pod = where
    answer = kubectl(
        "exec", "-n", namespace, pod, "--", "python", "-c", TRY, target[0], str(target[1]),
    ).strip()  # fmt: skip
    assert answer == "open" or "refused" in answer or "timed out" in answer, answer
    return answer == "open"


def pod_ip(name: str) -> str:
    (pod,) = (p for p in get("pods", **component(name)) if p["status"].get("podIP"))
    return str(pod["status"]["podIP"])


def one(component: str) -> tuple[str, str]:
    return NAMESPACE, next(iter(pods_of(component)))


def test_the_api_and_workers_reach_postgresql_redis_and_dns_and_a_stranger_does_not(
    strangers: dict[str, str],
) -> None:
    for name in ("api", "worker"):
        assert reaches(one(name), DATABASE), name  # by name: DNS works too
        assert reaches(one(name), REDIS), name
    elsewhere = (ELSEWHERE, strangers[ELSEWHERE])
    assert not reaches(elsewhere, DATABASE)
    assert reaches(elsewhere, REDIS)  # outside the cluster: no policy of ours guards it


def test_only_the_ingress_controller_reaches_the_api_port(
    strangers: dict[str, str], ingress_certificates: dict[str, str]
) -> None:
    with through_ingress(CLIENT_IPS[0], ingress_certificates["ca_file"]) as http:
        assert http.get("/v1/doctors", params={"limit": 1}).status_code == 200
    api = (pod_ip("api"), API_PORT)
    for namespace, pod in strangers.items():
        assert not reaches((namespace, pod), api), namespace


def test_migrations_and_backups_reach_postgresql_and_the_repository_and_only_they(
    strangers: dict[str, str], first_backup: dict[str, Any]
) -> None:
    """The install's migration Job and the first backup Job succeeded under enforcement
    (the release fixture and first_backup); pgBackRest's server port is theirs alone."""
    assert first_backup["status"]["succeeded"] == 1
    assert get("job", f"{RELEASE}-migrate-install")["status"]["succeeded"] == 1
    pgbackrest = (DATABASE[0], 8432)
    assert not reaches(one("api"), pgbackrest)
    assert not reaches((ELSEWHERE, strangers[ELSEWHERE]), pgbackrest)


def test_metrics_are_scraped_from_the_monitoring_namespace_only(
    strangers: dict[str, str],
) -> None:
    targets = [(pod_ip("api"), API_METRICS), (pod_ip("operator"), OPERATOR_METRICS)]
    for target in targets:
        assert reaches((MONITORING, strangers[MONITORING]), target), target
        assert not reaches((ELSEWHERE, strangers[ELSEWHERE]), target), target
    assert not reaches((MONITORING, strangers[MONITORING]), (pod_ip("api"), API_PORT))


def test_the_operator_reaches_the_kubernetes_api_and_the_api_pods_do_not() -> None:
    assert reaches(one("operator"), KUBE_API)
    assert not reaches(one("api"), KUBE_API)
    assert not reaches(one("worker"), KUBE_API)


def test_api_pods_reach_nothing_but_their_dependencies(strangers: dict[str, str]) -> None:
    api = one("api")
    operator_metrics = (pod_ip("operator"), OPERATOR_METRICS)
    assert reaches((MONITORING, strangers[MONITORING]), operator_metrics)  # it answers
    assert not reaches(api, operator_metrics)
    traefik = (get("pods", namespace="traefik")[0]["status"]["podIP"], 8443)
    assert reaches((ELSEWHERE, strangers[ELSEWHERE]), traefik)  # it answers
    assert not reaches(api, traefik)
    assert not reaches(api, (pod_ip("worker"), 9808))


def test_each_refusal_is_its_policys_widening_the_policy_opens_the_path(
    strangers: dict[str, str],
) -> None:
    """How the refused paths above are known to test the chart's policies (and not a
    closed port or some other rule): widened to every namespace, the database's policy
    lets the stranger in at once, and narrowed back it shuts it out again."""
    name, elsewhere = f"{RELEASE}-postgresql-ingress", (ELSEWHERE, strangers[ELSEWHERE])
    (rule, *_) = get("networkpolicy", name)["spec"]["ingress"]

    def first_rule(value: dict[str, Any]) -> None:
        change = [{"op": "replace", "path": "/spec/ingress/0", "value": value}]
        kubectl("patch", "networkpolicy", name, "-n", NAMESPACE, "--type=json",
                "-p", json.dumps(change))  # fmt: skip

    assert not reaches(elsewhere, DATABASE)
    first_rule({**rule, "from": [*rule["from"], {"namespaceSelector": {}}]})
    try:
        wait_until(lambda: reaches(elsewhere, DATABASE), "the widened policy lets it in", 30)
    finally:
        first_rule(rule)
    wait_until(lambda: not reaches(elsewhere, DATABASE), "the chart's policy shuts it out", 30)
