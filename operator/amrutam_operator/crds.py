"""The CRDs in the cluster must be the ones this operator writes status for.

`helm upgrade` never upgrades CRDs (Helm installs `crds/` once), and an API server prunes
every field its stored schema does not declare: an operator newer than its CRDs would
write conditions and status that silently vanish, and refuse nothing the new rules
forbid. So each CRD carries its schema revision, and the operator will not start on older
ones; its log says how to upgrade them (operator/README.md, "Upgrading").
"""

from __future__ import annotations

from typing import Any

from amrutam_operator import kube
from amrutam_operator.config import GROUP

# Raise with every change to a CRD's schema or rules (and the annotation in each file).
REVISION = 3
ANNOTATION = f"{GROUP}/schema-revision"
PLURALS = ("auditpartitionpolicies", "backupschedules", "pointintimerestores", "scalingpolicies")
UPGRADE = "kubectl apply --server-side --force-conflicts -f charts/amrutam/crds/"


class Outdated(Exception):
    """The cluster's CRDs are older than this operator."""


def revision(crd: Any) -> int:
    """A CRD's schema revision (0 for none, or no CRD)."""
    annotations = ((crd or {}).get("metadata") or {}).get("annotations") or {}
    return int(annotations.get(ANNOTATION, "0"))


async def check() -> None:
    stale = []
    for plural in PLURALS:
        name = f"{plural}.{GROUP}"
        crd = await kube.crd(name)
        found = revision(crd)
        if found < REVISION:
            stale.append(f"{name} (revision {found if crd else 'missing'})")
    if stale:
        raise Outdated(
            f"CRDs older than this operator (revision {REVISION}): {', '.join(stale)}. "
            f"Upgrade them first: {UPGRADE}"
        )
