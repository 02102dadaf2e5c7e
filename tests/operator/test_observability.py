"""The operator's Prometheus metrics and the health probe its Deployment uses."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import LIVENESS_PORT, METRICS_PORT
from tests.operator.conftest import Cluster

pytestmark = pytest.mark.asyncio(loop_scope="package")

FAILURES = (
    "amrutam_operator_reconciliations_total",
    (("kind", "AuditPartitionPolicy"), ("result", "failure")),
)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def failures() -> float:
    _, text = await get(f"http://127.0.0.1:{METRICS_PORT}/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return samples.get(FAILURES, 0.0)


async def test_failed_reconciliations_are_counted(cluster: Cluster) -> None:
    before = await failures()
    await cluster.apply(
        "auditpartitionpolicies", "metrics-probe", {"databaseSecretRef": {"name": "nope"}}
    )
    for _ in range(100):
        if await failures() > before:
            break
        await asyncio.sleep(0.2)
    assert await failures() > before


async def test_liveness_probe_answers(cluster: Cluster) -> None:
    status, body = await get(f"http://127.0.0.1:{LIVENESS_PORT}/healthz")
    assert status == 200
    assert '"watching": "standalone"' in body
