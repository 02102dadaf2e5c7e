"""Which claims a PointInTimeRestore may write into (N3: never one a database runs on)."""

from __future__ import annotations

from typing import Any

import pytest
from amrutam_operator import manifests, restores

from tests.operator.conftest import Cluster


def claim(owner: str | None) -> dict[str, Any]:
    annotations = {restores.OWNER: owner} if owner else {}
    return {"metadata": {"name": "restored", "annotations": annotations}}


def test_a_restore_writes_only_into_its_own_claim_that_nothing_else_mounts() -> None:
    assert restores.claim_refusal(None, "uid-1", []) is None  # made now, for this restore
    assert restores.claim_refusal(claim("uid-1"), "uid-1", []) is None  # a retry's own
    assert "was not created for this restore" in str(
        restores.claim_refusal(claim(None), "uid-1", [])
    )
    assert "was not created for this restore" in str(
        restores.claim_refusal(claim("uid-2"), "uid-1", [])
    )
    # Its own claim, after a failed attempt, that someone started a database on.
    refused = restores.claim_refusal(claim("uid-1"), "uid-1", ["amrutam-pg-restored-0"])
    assert refused == "persistentVolumeClaim 'restored' is mounted by amrutam-pg-restored-0"


@pytest.mark.asyncio(loop_scope="package")
async def test_the_pods_that_mount_a_claim_are_found_except_the_restores_own(
    cluster: Cluster,
) -> None:
    def pod(name: str, claim_name: str, labels: dict[str, str]) -> dict[str, Any]:
        volume = {"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}
        return {
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [volume]},
        }

    await cluster.create("v1", "pods", pod("database-0", "restored", {}))
    await cluster.create("v1", "pods", pod("other-0", "elsewhere", {}))
    own = pod("mine-restore-g1-x", "restored", {manifests.RESTORE_LABEL: "mine"})
    await cluster.create("v1", "pods", own)
    assert await restores.claim_users("default", "restored", "mine") == ["database-0"]
