"""The chart's pre-delete hook (kubernetes review D9): with the operator still running,
it deletes the release's custom resources and waits until the operator has released
their finalizers, so `helm uninstall` leaves nothing, and no namespace, stuck."""

from __future__ import annotations

import pytest
from amrutam_operator.uninstall import remaining, remove_all

from tests.operator.conftest import NAMESPACE, Cluster, eventually

pytestmark = pytest.mark.asyncio(loop_scope="package")
FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


async def test_uninstall_hook_removes_every_resource_past_its_finalizer(
    cluster: Cluster,
) -> None:
    await cluster.apply(
        "scalingpolicies",
        "leaving-scaler",
        {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "nobody"},
            "maxReplicas": 2,
            "metric": {"prometheus": {"serverAddress": "http://x", "query": "q", "target": 1}},
            "suspend": True,
        },
    )
    await cluster.apply(
        "auditpartitionpolicies",
        "leaving-audit",
        {"databaseSecretRef": {"name": "nowhere", "key": "dsn"}, "suspend": True},
    )
    for plural, name in [
        ("scalingpolicies", "leaving-scaler"),
        ("auditpartitionpolicies", "leaving-audit"),
    ]:
        # The operator has made them its own: Helm alone would leave them hanging.
        await eventually(
            lambda p=plural, n=name: (
                FINALIZER in cluster.resource(p, n)["metadata"].get("finalizers", [])
            )
        )

    left = await remove_all(NAMESPACE, deadline_s=30)
    assert left == []
    assert await remaining(NAMESPACE) == []
