"""`helm upgrade` leaves CRDs as they were: an operator on older ones refuses to start."""

from __future__ import annotations

import copy

import pytest
from amrutam_operator import crds

from tests.operator.conftest import Cluster

pytestmark = pytest.mark.asyncio(loop_scope="package")
KEY = "apiextensions.k8s.io/v1/customresourcedefinitions"


async def test_an_operator_on_crds_a_helm_upgrade_left_behind_says_how_to_upgrade_them(
    cluster: Cluster,
) -> None:
    await crds.check()  # as installed: fine
    name = "scalingpolicies.platform.amrutam.io"
    current = copy.deepcopy(dict(cluster.emulator.objects[KEY, None, name].raw))
    old = copy.deepcopy(current)
    old["metadata"]["annotations"][crds.ANNOTATION] = str(crds.REVISION - 1)
    cluster.emulator.objects[KEY, None, name] = old
    try:
        with pytest.raises(crds.Outdated) as refused:
            await crds.check()
        assert f"{name} (revision {crds.REVISION - 1})" in str(refused.value)
        assert "kubectl apply --server-side" in str(refused.value)
        # The upgrade the message gives: the chart's files applied over them.
        cluster.emulator.objects[KEY, None, name] = current
        await crds.check()
    finally:
        cluster.emulator.objects[KEY, None, name] = current
