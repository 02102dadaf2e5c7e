"""The chart's CRDs applied before an upgrade replaces the operator:
``python -m amrutam_operator.crd_upgrade DIR`` (the chart's pre-upgrade hook Job).

Helm installs ``crds/`` once and never upgrades it, and a new operator refuses to start
on CRDs older than it (crds.py): without this step a `helm upgrade` that changed a CRD
would report success and leave the platform with no operator (the old one is already
gone: its Deployment is Recreate). Each CRD in DIR replaces the cluster's when it carries
a newer schema revision; an older one (a rollback, an older chart) is never applied, so
fields the running operator writes are never pruned away.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiextensionsV1Api
from kubernetes.client.exceptions import ApiException

from amrutam_operator import kube
from amrutam_operator.crds import ANNOTATION, revision

# (API group, resource, verb) it makes; the hook's ClusterRole grants exactly these (by
# name, except create: a new CRD has no object yet to name).
CALLS = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "get"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "update"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
}

MANAGER = "amrutam-crd-upgrade"  # who wrote the fields, in the CRD's managedFields


def apply(api: ApiextensionsV1Api, crd: Any) -> str:
    """One CRD, as its YAML file has it (the client takes plain objects)."""
    name = crd["metadata"]["name"]
    try:
        found = api.read_custom_resource_definition(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
        api.create_custom_resource_definition(crd, field_manager=MANAGER)
        return f"{name}: created (revision {revision(crd)})"
    stored = api.api_client.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
    held = revision(stored)
    if held >= revision(crd) and ANNOTATION in (crd["metadata"].get("annotations") or {}):
        return f"{name}: revision {held} kept (the chart's is {revision(crd)})"
    # With the version read: a concurrent writer makes this fail, not vanish.
    crd["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
    api.replace_custom_resource_definition(name, crd, field_manager=MANAGER)
    return f"{name}: revision {held} -> {revision(crd)}"


def main(directory: str) -> int:
    api = ApiextensionsV1Api(kube.client())
    for path in sorted(Path(directory).glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd:
                print(apply(api, crd), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
