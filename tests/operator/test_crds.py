"""The CRDs are valid Kubernetes objects with structural schemas, and every example a
platform engineer would apply validates against them (and bad ones do not)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from amrutam_operator import crds as crd_revision

from tests.operator.cel import violations
from tests.operator.conftest import CRDS, ROOT, crds

EXAMPLES = sorted((ROOT / "operator" / "examples").glob("*.yaml"))
KUBERNETES = "1.37.0"

# Printer columns promised to platform teams (OPERATOR.md and its revision 2), and Age.
COLUMNS = {
    "AuditPartitionPolicy": [
        "Interval",
        "Premake",
        "Horizon",
        "Partitions",
        "Default Rows",
        "HorizonMet",
        "Ready",
        "Maintained",
        "Age",
    ],
    "ScalingPolicy": ["Target", "Min", "Max", "Current", "Desired", "Observed", "Ready", "Age"],
    "BackupSchedule": [
        "Stanza",
        "Last Full",
        "Last Backup",
        "Window From",
        "Window To",
        "Window",
        "WAL",
        "Fresh",
        "Drill",
        "Ready",
        "Age",
    ],
    "PointInTimeRestore": ["Target", "Phase", "Claim", "Restored To", "Ready", "Age"],
}
SHORT_NAMES = {
    "AuditPartitionPolicy": ["auditpol"],
    "ScalingPolicy": ["scp"],
    "BackupSchedule": ["bks"],
    "PointInTimeRestore": ["pitr"],
}


def by_kind() -> dict[str, dict[str, Any]]:
    """Every CRD the chart ships, kopf's peering one included."""
    found = [yaml.safe_load(path.read_text()) for path in sorted(CRDS.glob("*.yaml"))]
    return {crd["spec"]["names"]["kind"]: crd for crd in found}


def json_schema(node: Any) -> Any:
    """OpenAPI v3.0 (as Kubernetes reads it) to JSON Schema draft 4."""
    if isinstance(node, list):
        return [json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("type") == "object" and "properties" in out:
        out.setdefault("additionalProperties", False)  # structural: unknown fields pruned
    return out


def validator(kind: str) -> jsonschema.Draft4Validator:
    schema = by_kind()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema = json_schema(schema)
    # What every object has, whether its schema names it or not.
    schema["properties"].update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"}
    )
    return jsonschema.Draft4Validator(schema)


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += walk(child, f"{path}.{name}")
    if "items" in node:
        found += walk(node["items"], f"{path}[]")
    return found


def test_there_is_a_crd_for_every_resource_of_the_contract() -> None:
    assert {crd["spec"]["names"]["kind"] for crd in crds()} == set(COLUMNS)


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_crd_is_a_valid_kubernetes_object(kind: str) -> None:
    crd = by_kind()[kind]
    kubernetes_validate.validate(crd, KUBERNETES, strict=True)
    assert crd["spec"]["group"] == "platform.amrutam.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["shortNames"] == SHORT_NAMES[kind]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == COLUMNS[kind]


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_schema_is_structural_with_valid_defaults(kind: str) -> None:
    schema = by_kind()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    status = schema["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions"} <= set(status)
    for path, node in walk(schema):
        if path == ".metadata":
            continue
        assert "type" in node, f"{kind}{path} has no type"
        if "default" in node:
            jsonschema.Draft4Validator(json_schema(node)).validate(node["default"])
        for name in node.get("required", []):
            assert name in node.get("properties", {}), f"{kind}{path} requires unknown {name}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_validates(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert doc["apiVersion"] == "platform.amrutam.io/v1alpha1"
        validator(doc["kind"]).validate(doc)


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        (ROOT / "operator" / "examples" / f"{name}.yaml").read_text()
    )
    return doc


BAD = [
    ("auditpartitionpolicy", ["spec", "interval"], "hourly"),
    ("auditpartitionpolicy", ["spec", "premake"], 0),
    ("auditpartitionpolicy", ["spec", "table"], "audit_logs; DROP TABLE users"),
    ("auditpartitionpolicy", ["spec", "retention", "action"], "delete"),
    ("auditpartitionpolicy", ["spec", "checkInterval"], 1),
    ("scalingpolicy-workers", ["spec", "targetRef", "kind"], "Pod"),
    ("scalingpolicy-workers", ["spec", "maxReplicas"], 0),
    (
        "scalingpolicy-api",
        # Both metric sources at once (the API example already has prometheus).
        ["spec", "metric", "celeryQueue"],
        {"redisSecretRef": {"name": "r"}, "queues": ["q"], "targetPerReplica": 1},
    ),
    ("scalingpolicy-workers", ["spec", "metric", "celeryQueue", "queues"], []),
    ("scalingpolicy-workers", ["spec", "scaleDown", "maxStep"], 0),
    ("scalingpolicy-workers", ["spec", "unknownField"], True),
]


@pytest.mark.parametrize(("name", "path", "value"), BAD, ids=[".".join(b[1]) for b in BAD])
def test_bad_resources_are_refused(name: str, path: list[str], value: Any) -> None:
    doc = example(name)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert list(validator(doc["kind"]).iter_errors(doc)), f"{path} = {value!r} was accepted"


def test_required_fields_are_required() -> None:
    doc = example("scalingpolicy-workers")
    del doc["spec"]["targetRef"]
    assert list(validator("ScalingPolicy").iter_errors(doc))
    doc = example("auditpartitionpolicy")
    del doc["spec"]["databaseSecretRef"]
    assert list(validator("AuditPartitionPolicy").iter_errors(doc))


def test_scaling_policy_cel_rules() -> None:
    crd = by_kind()["ScalingPolicy"]
    doc = example("scalingpolicy-workers")
    assert violations(crd, doc) == []
    doc["spec"] |= {"minReplicas": 4, "maxReplicas": 3}
    assert violations(crd, doc) == [".spec: maxReplicas must be at least minReplicas"]
    # A StatefulSet removes its highest ordinal whatever a drain chose: refused.
    doc = example("scalingpolicy-workers")
    doc["spec"]["targetRef"]["kind"] = "StatefulSet"
    doc["spec"].pop("drainBeforeScaleDown", None)  # (defaults to true)
    assert [v.split(",")[0] for v in violations(crd, doc)] == [
        ".spec: a StatefulSet removes its highest ordinal"
    ]
    doc["spec"]["drainBeforeScaleDown"] = False
    assert violations(crd, doc) == []


def test_audit_partition_policy_interval_cannot_change() -> None:
    """Weekly partitions inside existing monthly ranges would overlap: maintenance would
    fail from then on (kubernetes review D6). The API server refuses the update."""
    crd = by_kind()["AuditPartitionPolicy"]
    old = example("auditpartitionpolicy")
    assert violations(crd, old) == []  # (a transition rule does not apply on create)
    new = copy.deepcopy(old)
    new["spec"]["interval"] = "weekly" if old["spec"].get("interval") != "weekly" else "daily"
    assert violations(crd, new, old) == [
        ".spec.interval: interval cannot change after creation; create a new policy for a new table"
    ]
    assert violations(crd, old, old) == []


def test_backup_schedule_needs_s3_keys_unless_it_uses_the_pods_identity() -> None:
    crd = by_kind()["BackupSchedule"]
    doc = example("backupschedule")
    s3 = doc["spec"]["repo"]["s3"]
    assert violations(crd, doc) == []
    del s3["credentialsSecretRef"]
    assert violations(crd, doc) == [
        ".spec.repo.s3: credentialsSecretRef is required unless keyType is web-id"
    ]
    s3["keyType"] = "web-id"
    doc["spec"]["serviceAccountName"] = "amrutam-backup"
    assert violations(crd, doc) == []
    assert not list(validator("BackupSchedule").iter_errors(doc))


def test_every_crd_file_carries_the_revision_the_operator_needs() -> None:
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["group"] == "platform.amrutam.io":
            revision = crd["metadata"]["annotations"][crd_revision.ANNOTATION]
            assert int(revision) == crd_revision.REVISION, path.name


def test_audit_partition_policy_drop_needs_a_backup_schedule() -> None:
    crd = by_kind()["AuditPartitionPolicy"]
    doc = example("auditpartitionpolicy")
    doc["spec"]["retention"] = {"keep": 84, "action": "drop"}
    assert violations(crd, doc) == [
        ".spec.retention: action drop needs backupScheduleRef"
        " (a table is dropped only once a full backup holds it)"
    ]
    doc["spec"]["retention"]["backupScheduleRef"] = {"name": "amrutam"}
    assert violations(crd, doc) == []
