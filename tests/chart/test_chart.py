"""The Helm chart, rendered by the real Helm engine and checked against the Kubernetes
schemas of a current release, for the value sets people actually install with."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from amrutam_operator import crd_upgrade, manifests
from amrutam_operator import secrets as generator
from amrutam_operator.kube import CALLS

from tests.chart.rendering import CHART, named, of_kind, render
from tests.operator.test_crds import validator

KUBERNETES = "1.37.0"

PRODUCTION: dict[str, Any] = {
    "image": {"tag": "1.4.2"},
    "database": {"host": "amrutam.cluster-abc.eu-central-1.rds.amazonaws.com"},
    "redis": {"host": "amrutam.infra.cache.amazonaws.com", "tls": True},
    "secrets": {"existingSecret": "amrutam-env"},
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "host": "api.amrutam.health",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
        "tls": {"enabled": True, "secretName": "amrutam-api-tls"},
    },
    "api": {"autoscaling": {"minReplicas": 3, "maxReplicas": 20}},
}
# Backups are for the chart's own PostgreSQL (a managed database keeps its provider's).
BACKUPS: dict[str, Any] = {
    "enabled": True,
    "repo": {
        "type": "s3",
        "s3": {
            "bucket": "amrutam-backups",
            "region": "eu-central-1",
            "endpoint": "s3.eu-central-1.amazonaws.com",
            "credentialsSecret": "amrutam-backup-s3",
        },
    },
    "tlsSecret": "amrutam-pgbackrest-client",
}
MINIMAL: dict[str, Any] = {
    "operator": {"enabled": False},
    "worker": {"scaling": {"enabled": False}, "replicas": 1},
    "api": {"autoscaling": {"enabled": False}, "replicas": 1},
    "networkPolicy": {"enabled": False},
    "topologySpread": {"enabled": False},
    "auditPartitionPolicy": {"enabled": False},
}
MONITORING: dict[str, Any] = {
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True},
    },
    "postgresql": {"enabled": True, "tlsSecret": "amrutam-pgbackrest-tls"},
    "backups": BACKUPS,
}
IN_CLUSTER_POSTGRES: dict[str, Any] = {
    "postgresql": {"enabled": True, "tlsSecret": "amrutam-pgbackrest-tls"},
    "backups": BACKUPS,
}
ROLE = "arn:aws:iam::123456789012:role/amrutam-backups"
# Production on EKS: the chart's PostgreSQL backed up to S3 through IRSA, no static keys.
CLOUD_IDENTITY: dict[str, Any] = {
    **PRODUCTION,
    "postgresql": {"enabled": True, "tlsSecret": "amrutam-pgbackrest-tls"},
    "backups": {
        **BACKUPS,
        "repo": {
            "type": "s3",
            "s3": {
                **{k: v for k, v in BACKUPS["repo"]["s3"].items() if k != "credentialsSecret"},
                "keyType": "web-id",
            },
        },
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": ROLE}},
    },
    "operator": {"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": ROLE}}},
}
# What a GitOps repository sets: its own names, placement and extras per component.
PLACED = {
    "nodeSelector": {"node.kubernetes.io/pool": "platform"},
    "tolerations": [{"key": "dedicated", "value": "platform", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "arch", "operator": "In", "values": ["amd64"]}]}
                ]
            }
        }
    },
    "priorityClassName": "platform-critical",
    "podAnnotations": {"sidecar.istio.io/inject": "false"},
    "extraEnv": [{"name": "AMRUTAM_EXTRA_FLAG", "value": "1"}],
}
GITOPS: dict[str, Any] = {
    "fullnameOverride": "telemed",
    "nameOverride": "telemed-app",
    "api": PLACED,
    "worker": PLACED,
    "beat": PLACED,
    "operator": PLACED,
}
VALUE_SETS = {
    "default": {},
    "production": PRODUCTION,
    "minimal": MINIMAL,
    "monitoring": MONITORING,
    "in-cluster-postgres": IN_CLUSTER_POSTGRES,
    "cloud-identity": CLOUD_IDENTITY,
    "gitops": GITOPS,
}


def validate(doc: dict[str, Any]) -> None:
    """Against the Kubernetes schemas, or the CRD that defines the kind."""
    group = doc["apiVersion"].split("/")[0]
    if group in ("platform.amrutam.io", "kopf.dev"):
        validator(doc["kind"]).validate(doc)  # the chart's own CRDs' schemas
    elif group == "monitoring.coreos.com":
        assert doc["kind"] in ("ServiceMonitor", "PrometheusRule")
        assert doc["spec"]  # the Prometheus operator's CRDs are not bundled here
    else:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"])
        for d in docs
        if d["kind"] in ("Deployment", "Job", "StatefulSet")
    ]


@pytest.fixture(params=sorted(VALUE_SETS), scope="module")
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(VALUE_SETS[request.param])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_is_clean(name: str) -> None:
    report = helm.lint(CHART, VALUE_SETS[name], strict=True, namespace="amrutam")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"]
    assert not problems


def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: list[dict[str, Any]],
) -> None:
    for doc in rendered:
        validate(doc)


def test_chart_crds_are_valid() -> None:
    for crd in helm.Chart.load(CHART).crds:
        for doc in yaml.safe_load_all(crd["data"]):
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_every_container_is_unprivileged_with_resources_and_probes(
    rendered: list[dict[str, Any]],
) -> None:
    for name, template in pod_specs(rendered):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"]["cpu"], name
            assert container["resources"]["requests"]["memory"], name
            assert container["resources"]["limits"]["memory"], name
            if name.startswith("Deployment/"):
                assert "livenessProbe" in container, name
                assert "readinessProbe" in container, name


def test_probes_are_wired_to_the_health_endpoints() -> None:
    docs = {d["metadata"]["name"]: d for d in of_kind(render({}), "Deployment")}
    api = docs["amrutam-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"
    # Readiness is this process serving, not the shared PostgreSQL and Redis.
    assert api["readinessProbe"]["httpGet"]["path"] == "/livez"
    worker = docs["amrutam-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert "--hostname=celery@$(POD_NAME)" in worker["command"]  # the operator drains by it
    operator = docs["amrutam-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert operator["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert docs["amrutam-beat"]["spec"]["replicas"] == 1
    assert docs["amrutam-beat"]["spec"]["strategy"] == {"type": "Recreate"}
    assert docs["amrutam-operator"]["spec"]["strategy"] == {"type": "Recreate"}


def rbac_rules(docs: list[dict[str, Any]], account: str) -> list[dict[str, Any]]:
    """The rules of every role bound to this service account."""
    bound = {
        binding["roleRef"]["name"]
        for binding in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding")
        if any(subject["name"] == account for subject in binding["subjects"])
    }
    rules = []
    for doc in of_kind(docs, "Role") + of_kind(docs, "ClusterRole"):
        if doc["metadata"]["name"] in bound:
            rules += doc["rules"]
    return rules


def allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


def test_operator_rbac_covers_every_call_and_nothing_wild() -> None:
    rules = rbac_rules(render({}), "amrutam-operator")
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
    missing = [call for call in sorted(CALLS) if not allows(rules, *call)]
    assert not missing, f"the operator calls these without permission: {missing}"
    # kopf itself: watch the resources, patch them and their status, peer, post Events.
    for plural in (
        "auditpartitionpolicies",
        "scalingpolicies",
        "backupschedules",
        "pointintimerestores",
    ):
        for verb in ("list", "watch", "patch"):
            assert allows(rules, "platform.amrutam.io", plural, verb)
        assert allows(rules, "platform.amrutam.io", f"{plural}/status", "patch")
    assert allows(rules, "kopf.dev", "kopfpeerings", "patch")
    assert allows(rules, "", "events", "create")
    assert allows(rules, "apiextensions.k8s.io", "customresourcedefinitions", "watch")
    # And nothing it does not use: no write access to secrets, no pod deletion.
    assert not allows(rules, "", "secrets", "list")
    assert not allows(rules, "", "pods", "delete")
    assert not allows(rules, "apps", "deployments", "patch")


def test_rbac_binds_only_the_operator_and_the_hook_jobs() -> None:
    docs = render({})
    accounts = {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"].get(
            "serviceAccountName"
        )
        for d in of_kind(docs, "Deployment") + of_kind(docs, "Job")
    }
    assert accounts["Deployment/amrutam-operator"] == "amrutam-operator"
    assert accounts["Job/amrutam-secrets"] == "amrutam-secrets"
    assert accounts["Job/amrutam-crds"] == "amrutam-crds"
    for binding in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding"):
        ((subject),) = binding["subjects"]
        assert subject["name"] in ("amrutam-operator", "amrutam-secrets", "amrutam-crds")
        assert subject["namespace"] == "amrutam"
    others = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] != "amrutam-operator"]
    for deployment in others:
        assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_the_secrets_job_may_write_its_own_secret_and_nothing_else() -> None:
    rules = rbac_rules(render({}), "amrutam-secrets")
    missing = [call for call in sorted(generator.CALLS) if not allows(rules, *call)]
    assert not missing
    for rule in rules:
        assert rule["resources"] == ["secrets"]
        assert set(rule["verbs"]) <= {"create", "get", "patch"}
        if set(rule["verbs"]) & {"get", "patch"}:
            assert rule["resourceNames"] == ["amrutam-env"]


def test_the_crds_job_may_write_the_charts_crds_and_only_exists_during_an_upgrade() -> None:
    docs = render({})
    rules = rbac_rules(docs, "amrutam-crds")
    assert not [call for call in sorted(crd_upgrade.CALLS) if not allows(rules, *call)]
    ours = sorted(
        yaml.safe_load(p.read_text())["metadata"]["name"] for p in (CHART / "crds").glob("*.yaml")
    )
    for rule in rules:
        assert rule["resources"] == ["customresourcedefinitions"]
        if rule["verbs"] != ["create"]:  # a new CRD has no name to limit create to
            assert sorted(rule["resourceNames"]) == ours
    for doc in docs:
        if doc["metadata"]["name"].startswith("amrutam-crds"):
            assert doc["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade", doc["kind"]


def test_migrations_run_before_the_deployments() -> None:
    docs = render({})
    job = next(j for j in of_kind(docs, "Job") if j["metadata"]["name"] == "amrutam-migrate")
    hooks = job["metadata"]["annotations"]
    assert set(hooks["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    # What the Job reads exists before it: the env ConfigMap is an earlier hook, and the
    # Secret is written by an earlier hook Job (which needs its own objects before it).
    weight = {
        f"{d['kind']}/{d['metadata']['name']}": int(
            d["metadata"]["annotations"]["helm.sh/hook-weight"]
        )
        for d in render({}, installed=False)
        if "helm.sh/hook-weight" in (d["metadata"].get("annotations") or {})
    }
    assert weight["ConfigMap/amrutam-env"] < weight["Job/amrutam-migrate"]
    assert weight["Job/amrutam-secrets"] < weight["Job/amrutam-migrate"]
    for needed in (
        "Secret/amrutam-secrets-given",
        "ServiceAccount/amrutam-secrets",
        "Role/amrutam-secrets",
        "RoleBinding/amrutam-secrets",
    ):
        assert weight[needed] < weight["Job/amrutam-secrets"]
    for deployment in of_kind(docs, "Deployment"):
        assert "helm.sh/hook" not in (deployment["metadata"].get("annotations") or {})
    assert "amrutam migrate" in job["spec"]["template"]["spec"]["containers"][0]["command"][-1]


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present = labels.get(expression["key"])
        if expression["operator"] == "In" and present not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and present in expression["values"]:
            return False
        if expression["operator"] == "Exists" and present is None:
            return False
    return True


def test_each_service_routes_to_one_component() -> None:
    docs = render({})
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in of_kind(docs, "Deployment") + of_kind(docs, "Job")
    }
    for service in of_kind(docs, "Service"):
        chosen = {
            n
            for n, labels in pods.items()
            if matches({"matchLabels": service["spec"]["selector"]}, labels)
        }
        assert len(chosen) == 1, service["metadata"]["name"]


def test_production_values_use_the_existing_secret_and_tls() -> None:
    docs = render(PRODUCTION)
    assert not of_kind(docs, "Secret")  # nothing generated
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["spec"]["tls"] == [
        {"hosts": ["api.amrutam.health"], "secretName": "amrutam-api-tls"}
    ]
    api = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "amrutam-api")
    env = api["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env} == {"amrutam-env"}
    (schedule,) = of_kind(render(IN_CLUSTER_POSTGRES), "BackupSchedule")
    assert schedule["spec"]["repo"]["s3"]["credentialsSecretRef"] == {"name": "amrutam-backup-s3"}


def test_generated_secrets_are_strong_and_urls_complete() -> None:
    secret = named(render({}), "Secret", "amrutam-env")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert len(data["AMRUTAM_JWT_SECRET"]) == 40
    assert data["AMRUTAM_JWT_SECRET"] != data["AMRUTAM_AUDIT_SIGNING_KEY"]
    assert data["AMRUTAM_DATABASE_URL"].startswith("postgresql+asyncpg://amrutam_app:")
    assert data["AMRUTAM_REDIS_URL"] == "redis://redis:6379/0"


def test_every_operator_series_an_alert_reads_is_one_the_operator_exports() -> None:
    """What each alert does with its series is test_alert_rules.py's (promtool); this is
    the other half: the names it reads are the operator's."""
    docs = render(MONITORING)
    (rule,) = of_kind(docs, "PrometheusRule")
    from amrutam_operator import metrics
    from prometheus_client import REGISTRY

    families = list(REGISTRY.collect())
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in families}
    assert metrics.BACKUP_CONDITION  # (imported: registered)
    read = {
        name
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
        for name in re.findall(r"amrutam_(?:backup|operator)_[a-z_]+", r["expr"])
    }
    assert read
    assert read <= exported, read - exported
    assert of_kind(docs, "ServiceMonitor")


def with_value(path: str, value: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    node = values
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return values


BAD = [
    ("image.pullPolicy", "Sometimes"),
    ("api.port", 0),
    ("worker.concurrency", 0),
    ("config.environment", "staging"),
    ("secrets.jwtSecret", "short"),
    ("podSecurityContext.runAsNonRoot", False),
    ("securityContext.allowPrivilegeEscalation", True),
    ("auditPartitionPolicy.interval", "hourly"),
    ("backups.schedules.full", "every sunday"),
    ("replicas", 3),  # a typo for api.replicas
    ("postgresql.storage", "lots"),
]


@pytest.mark.parametrize(("path", "value"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_refused_by_the_schema(path: str, value: Any) -> None:
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(with_value(path, value)))


def test_incomplete_feature_values_are_refused() -> None:
    chart = helm.Chart.load(CHART)
    tls = with_value("ingress.tls.enabled", True)
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(tls))
    backups = with_value("backups.enabled", True)
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(backups))
    posix_backups = {**IN_CLUSTER_POSTGRES, "backups": {**BACKUPS, "repo": {"type": "posix"}}}
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(posix_backups))
    managed = {**PRODUCTION, "backups": BACKUPS}  # no pgBackRest server beside a managed DB
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(managed))
    no_tls = {"postgresql": {"enabled": True}, "backups": BACKUPS}
    with pytest.raises(helm.HelmValuesError):  # the TLS server needs its certificate
        chart.validate_schema(chart.merge_values(no_tls))
    for good in (PRODUCTION, IN_CLUSTER_POSTGRES, {"postgresql": {"enabled": True}}):
        chart.validate_schema(chart.merge_values(copy.deepcopy(good)))


def test_skaffold_builds_the_image_the_chart_deploys() -> None:
    """skaffold.yaml against the chart (the field names follow skaffold's v4beta13
    schema; no skaffold binary runs here)."""
    config = yaml.safe_load((CHART.parents[1] / "skaffold.yaml").read_text())
    assert config["apiVersion"] == "skaffold/v4beta13"
    (artifact,) = config["build"]["artifacts"]
    assert (CHART.parents[1] / artifact["docker"]["dockerfile"]).exists()
    (release,) = config["deploy"]["helm"]["releases"]
    assert (CHART.parents[1] / release["chartPath"]) == CHART
    image = artifact["image"]
    assert release["setValueTemplates"] == {
        "image.repository": "{{.IMAGE_REPO_" + image + "}}",
        "image.tag": "{{.IMAGE_TAG_" + image + "}}@{{.IMAGE_DIGEST_" + image + "}}",
    }
    (dev,) = config["profiles"]
    for patch in dev["patches"]:
        for path in patch["value"]:
            dev_values = yaml.safe_load((CHART.parents[1] / path).read_text())
            chart = helm.Chart.load(CHART)
            chart.validate_schema(chart.merge_values(dev_values))
            docs = render(dev_values)
            for doc in docs:
                validate(doc)


def test_in_cluster_postgresql_archives_to_s3_and_serves_backup_jobs_over_tls() -> None:
    docs = render(IN_CLUSTER_POSTGRES)
    (database,) = of_kind(docs, "StatefulSet")
    pod = database["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["postgresql", "pgbackrest"]
    assert any("archive_command=pgbackrest" in a for a in pod["containers"][0]["args"])
    assert pod["containers"][1]["command"][-1] == "server"
    s3_keys = {e["name"] for e in pod["containers"][0]["env"] if "valueFrom" in e}
    assert {"PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET"} <= s3_keys
    configs = {
        d["metadata"]["name"]: d["data"].get("pgbackrest.conf") for d in of_kind(docs, "ConfigMap")
    }
    assert "repo1-type=s3" in configs["amrutam-pgbackrest-db"]  # WAL goes straight to S3
    jobs_config = configs["amrutam-pgbackrest"]
    assert "pg1-host=amrutam-postgresql" in jobs_config
    assert "repo1-" not in jobs_config  # the BackupSchedule's spec is the repository's truth
    secret = named(docs, "Secret", "amrutam-env")
    url = base64.b64decode(secret["data"]["AMRUTAM_DATABASE_URL"]).decode()
    assert "@amrutam-postgresql:5432/amrutam" in url
    # Only the platform's pods reach PostgreSQL, only backup Jobs its pgBackRest server.
    policy = next(
        p
        for p in of_kind(docs, "NetworkPolicy")
        if p["metadata"]["name"] == "amrutam-postgresql-ingress"
    )
    pods = {
        d["metadata"]["name"].removeprefix("amrutam-"): d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "Job", "StatefulSet")
    }
    sql_from = policy["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert {n for n, labels in pods.items() if matches(sql_from, labels)} == {
        "api",
        "worker",
        "beat",
        "operator",
        "migrate-install",  # on a first install it is one of the release's objects (N5)
    }
    assert {n for n, labels in pods.items() if matches(policy["spec"]["podSelector"], labels)} == {
        "postgresql"
    }
    backup_pod = {"platform.amrutam.io/backup-schedule": "amrutam"}
    assert matches(policy["spec"]["ingress"][1]["from"][0]["podSelector"], backup_pod)


def test_without_backups_postgresql_archives_nothing() -> None:
    """An archive_command that can never succeed would keep every WAL segment."""
    (database,) = of_kind(render({"postgresql": {"enabled": True}}), "StatefulSet")
    pod = database["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["postgresql"]
    assert "args" not in pod["containers"][0]


def test_postgresql_starts_on_an_existing_claim_the_runbooks_way_back() -> None:
    """docs/backup-restore.md: point the chart at the volume a restore filled."""
    values = {**IN_CLUSTER_POSTGRES, "postgresql": {**IN_CLUSTER_POSTGRES["postgresql"]}}
    values["postgresql"]["existingClaim"] = "restored-20261129"
    (database,) = of_kind(render(values), "StatefulSet")
    assert "volumeClaimTemplates" not in database["spec"]
    # N4: a StatefulSet's claim templates cannot change (the API server refuses the
    # upgrade), so on an existing claim it is another StatefulSet, which Helm creates as
    # it deletes the first; tests/cluster/test_restore.py runs that hand-over.
    assert database["metadata"]["name"] == "amrutam-pg-restored-20261129"
    volumes = {v["name"]: v for v in database["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": "restored-20261129"},
    }
    mounts = database["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "data", "mountPath": "/var/lib/postgresql/data"} in mounts
    env = {
        e["name"]: e.get("value")
        for e in database["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    # The restore Job lays the data directory out at this same place on its volume.
    from amrutam_operator.manifests import MOUNT, PGDATA

    assert ("/var/lib/postgresql/data", env["PGDATA"]) == (MOUNT, PGDATA)


def test_the_api_never_receives_the_administrators_database_url() -> None:
    """F14: the owner's URL would let the API bypass the audit trail's privileges."""
    for values in ({}, PRODUCTION):
        docs = render(values)
        api = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-api"))
        (container,) = api["spec"]["template"]["spec"]["containers"]
        assert not [ref for ref in container.get("envFrom", []) if "secretRef" in ref]
        keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
        assert "AMRUTAM_DATABASE_URL" in keys
        assert not keys & {
            "AMRUTAM_DATABASE_ADMIN_URL",
            "AMRUTAM_APP_ROLE_PASSWORD",
            "POSTGRES_PASSWORD",
        }


def test_the_api_container_gets_every_setting_production_requires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API's environment, as the kubelet would assemble it from the rendered objects,
    passes the production settings' checks (a secret missing from its list refused to
    start in the image test)."""
    from amrutam.settings import Settings

    docs = render({})  # the chart's defaults: production, with the Secret its Job writes
    secret = {
        k: base64.b64decode(v).decode()
        for k, v in named(docs, "Secret", "amrutam-env")["data"].items()
    }
    config = named(docs, "ConfigMap", "amrutam-env")["data"]
    api = next(d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-api"))
    (container,) = api["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= config
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = secret[item["valueFrom"]["secretKeyRef"]["key"]]
    for name in [n for n in os.environ if n.startswith("AMRUTAM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.environment == "production"
    assert settings.mfa_required


def test_the_ingress_publishes_the_api_but_not_metrics_or_probes() -> None:
    """F23: /metrics and the probes are for the cluster, not the internet."""
    (ingress,) = of_kind(render(PRODUCTION), "Ingress")
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {"/v1", "/fhir", "/docs", "/openapi.json"}


def allowed_disruptions(pdb: dict[str, Any], healthy: int) -> int:
    """The disruption controller's arithmetic for integer budgets, all pods healthy."""
    spec = pdb["spec"]
    if "minAvailable" in spec:
        return max(healthy - int(spec["minAvailable"]), 0)
    return min(int(spec["maxUnavailable"]), healthy)


def test_the_worker_budget_lets_a_node_drain_at_the_fewest_workers() -> None:
    """With the ScalingPolicy at its minimum of one worker, a minAvailable of 1 allowed
    no eviction at all: every node drain and cluster-autoscaler scale-down blocked."""
    docs = render({})
    pdb = next(
        d for d in of_kind(docs, "PodDisruptionBudget") if d["metadata"]["name"].endswith("-worker")
    )
    fewest = yaml.safe_load((CHART / "values.yaml").read_text())["worker"]["scaling"]["minReplicas"]
    assert allowed_disruptions(pdb, healthy=fewest) >= 1
    chosen = render({"worker": {"pdb": {"minAvailable": 2}}})
    pdb = next(
        d
        for d in of_kind(chosen, "PodDisruptionBudget")
        if d["metadata"]["name"].endswith("-worker")
    )
    assert pdb["spec"] == {**pdb["spec"], "minAvailable": 2}
    assert "maxUnavailable" not in pdb["spec"]


def test_operator_replicas_peer_in_a_rendered_peering_object_each_with_its_own_priority() -> None:
    docs = render(with_value("operator.replicas", 2))
    (peering,) = of_kind(docs, "KopfPeering")
    operator = named(docs, "Deployment", "amrutam-operator")
    assert operator["spec"]["replicas"] == 2
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    env = {
        e["name"]: e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container["env"]
    }
    # The object kopf peers in is the one rendered, in the operator's namespace.
    assert env["AMRUTAM_OPERATOR_PEERING_NAME"] == peering["metadata"]["name"]
    assert "--namespace=amrutam" in container["command"]
    assert env["AMRUTAM_OPERATOR_NAMESPACE"] == "metadata.namespace"
    # Equal priorities freeze every peer: each pod takes its own from its name.
    assert env["AMRUTAM_OPERATOR_POD_NAME"] == "metadata.name"
    assert "--priority" not in " ".join(container["command"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_a_gitops_sync_renders_the_same_objects_every_time(name: str) -> None:
    """Argo CD and Flux render with no cluster to ask (no `lookup`): nothing may re-roll."""
    once, again = (render(VALUE_SETS[name], installed=False) for _ in range(2))
    assert once == again
    for template in (CHART / "templates").rglob("*.*"):
        text = template.read_text()
        for call in ("lookup", "randAlpha", "randAscii", "randNumeric", "uuidv4", "genPrivateKey"):
            assert call not in text, f"{template.name} calls {call}"


def test_s3_through_the_pods_cloud_identity_needs_no_static_keys() -> None:
    docs = render(CLOUD_IDENTITY)
    text = yaml.safe_dump_all(docs)
    assert "PGBACKREST_REPO1_S3_KEY" not in text
    assert (
        "repo1-s3-key-type=web-id"
        in named(docs, "ConfigMap", "amrutam-pgbackrest-db")["data"]["pgbackrest.conf"]
    )
    account = named(docs, "ServiceAccount", "amrutam-backup")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE}
    assert (
        named(docs, "StatefulSet", "amrutam-postgresql")["spec"]["template"]["spec"][
            "serviceAccountName"
        ]
        == "amrutam-backup"
    )
    operator_account = named(docs, "ServiceAccount", "amrutam-operator")
    assert operator_account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE}
    # The Jobs the operator builds from the BackupSchedule run as that account, keyless.
    (schedule,) = of_kind(docs, "BackupSchedule")
    assert schedule["spec"]["repo"]["s3"]["keyType"] == "web-id"
    job = manifests.backup_job_spec("amrutam-full", schedule["spec"], "full")
    pod = job["template"]["spec"]
    assert pod["serviceAccountName"] == "amrutam-backup"
    assert "--repo1-s3-key-type=web-id" in " ".join(pod["containers"][0]["command"])
    assert "S3_KEY" not in yaml.safe_dump(pod)


def test_the_api_drains_before_it_is_killed_and_spreads_over_zones_and_nodes() -> None:
    values = with_value("api.shutdown", {"preStopSeconds": 7, "drainSeconds": 25})
    pod = named(render(values), "Deployment", "amrutam-api")["spec"]["template"]["spec"]
    api = pod["containers"][0]
    assert api["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "7"]
    config = named(render(values), "ConfigMap", "amrutam-env")["data"]
    assert config["AMRUTAM_SHUTDOWN_GRACE_S"] == "25"
    assert pod["terminationGracePeriodSeconds"] == 7 + 25 + 5
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    pdb = named(render({}), "PodDisruptionBudget", "amrutam-api")
    assert pdb["spec"]["minAvailable"] == 1


def test_every_component_takes_its_placement_names_and_extras() -> None:
    docs = render(GITOPS)
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in of_kind(docs, "Deployment")}
    assert set(pods) == {"telemed-api", "telemed-worker", "telemed-beat", "telemed-operator"}
    for name, template in pods.items():
        spec = template["spec"]
        assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "telemed-app"
        for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
            assert spec[field] == PLACED[field], (name, field)
        assert template["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        env = [e["name"] for e in spec["containers"][0].get("env", [])]
        assert env[-1] == "AMRUTAM_EXTRA_FLAG", name
    # Given constraints replace the chart's zone spread.
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "x"}},
        }
    ]
    api = named(
        render(with_value("api.topologySpreadConstraints", spread)), "Deployment", "amrutam-api"
    )
    assert api["spec"]["template"]["spec"]["topologySpreadConstraints"] == spread


def test_a_change_to_a_given_secret_value_rolls_the_pods_and_nothing_else_does() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"][
                "checksum/secret"
            ]
            for d in of_kind(render(values, installed=False), "Deployment")
            if d["metadata"]["name"] != "amrutam-operator"
        }

    before = checksums({})
    assert set(before) == {"amrutam-api", "amrutam-worker", "amrutam-beat"}
    assert checksums({}) == before
    after = checksums(with_value("secrets.jwtSecret", "rotated-" + "k" * 40))
    assert all(after[name] != before[name] for name in before)


def test_the_chart_label_is_valid_for_a_build_version(tmp_path: Path) -> None:
    chart = tmp_path / "amrutam"
    shutil.copytree(CHART, chart)
    meta = chart / "Chart.yaml"
    meta.write_text(meta.read_text().replace("version: 0.1.0", "version: 0.1.0+build.7"))
    out = helm.Chart.load(chart).render({}, name="amrutam", namespace="amrutam", is_install=True)
    labels = re.findall(r"helm.sh/chart: (\S+)", "".join(out.values()))
    assert labels
    assert set(labels) == {"amrutam-0.1.0_build.7"}


def test_jobs_the_operator_makes_get_the_charts_pull_secrets_and_placement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """N6: backup, restore and drill Jobs had no pull secrets or placement: ImagePullBackOff
    with a private registry, Pending on tainted node pools. The operator's environment, as
    rendered, reaches every pod it builds."""
    pull = [{"name": "registry-credentials"}]
    values = {**IN_CLUSTER_POSTGRES, "imagePullSecrets": pull}
    placement = {
        k: PLACED[k] for k in ("nodeSelector", "tolerations", "affinity", "priorityClassName")
    }
    values["backups"] = {**BACKUPS, "jobs": placement}
    docs = render(values)
    (container,) = named(docs, "Deployment", "amrutam-operator")["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    monkeypatch.setenv("AMRUTAM_OPERATOR_JOB_POD", env["AMRUTAM_OPERATOR_JOB_POD"])
    monkeypatch.setattr(manifests, "settings", type(manifests.settings()))
    (schedule,) = of_kind(docs, "BackupSchedule")
    pods = {
        "backup": manifests.backup_job_spec("amrutam-full", schedule["spec"], "full")["template"],
        "drill": manifests.drill_job_spec("amrutam-drill", schedule["spec"])["template"],
    }
    for name, pod in pods.items():
        assert pod["spec"]["imagePullSecrets"] == pull, name
        for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
            assert pod["spec"][field] == PLACED[field], (name, field)
    # The database's own pods and the backup account pull with them too.
    database = named(docs, "StatefulSet", "amrutam-postgresql")["spec"]["template"]["spec"]
    assert database["imagePullSecrets"] == pull
    assert named(docs, "ServiceAccount", "amrutam-backup")["imagePullSecrets"] == pull


def test_dns_and_the_apis_direct_sources_are_values_with_the_old_behaviour_by_default() -> None:
    """N7: DNS was pinned to kube-dns pods on port 53 (NodeLocal DNSCache and OpenShift's
    5353 blocked), and only an ingress controller pod could reach the API (no ipBlock for
    load balancers that send straight to pods)."""

    def policies(values: dict[str, Any]) -> dict[str, Any]:
        return {p["metadata"]["name"]: p["spec"] for p in of_kind(render(values), "NetworkPolicy")}

    default = policies({})
    (dns, _) = default["amrutam-egress-api"]["egress"]
    assert dns["to"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    ]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    nodelocal = {"ipBlock": {"cidr": "169.254.20.10/32"}}
    openshift = [{"port": 5353, "protocol": "UDP"}, {"port": 5353, "protocol": "TCP"}]
    balancer = {"ipBlock": {"cidr": "10.0.0.0/16"}}
    changed = policies(
        {"networkPolicy": {"dns": {"to": [nodelocal], "ports": openshift}, "apiFrom": [balancer]}}
    )
    for name, spec in changed.items():
        if name.startswith("amrutam-egress-"):
            assert spec["egress"][0] == {"to": [nodelocal], "ports": openshift}, name
    (rule,) = changed["amrutam-api-ingress"]["ingress"]
    assert rule["from"][-1] == balancer
    assert rule["from"][:-1] == default["amrutam-api-ingress"]["ingress"][0]["from"]
