"""ScalingPolicy: the real operator scales on a real Redis queue (draining: test_scale_in)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from celery import Celery

from amrutam.dev.servers import RedisServer, free_port
from tests.operator.conftest import Cluster, condition, eventually

pytestmark = pytest.mark.asyncio(loop_scope="package")


@pytest.fixture(scope="module")
def broker_url(redis_server: RedisServer) -> str:
    url = redis_server.url(7)
    redis.Redis.from_url(url).flushdb()
    return url


def enqueue(broker_url: str, queue: str, count: int) -> None:
    app = Celery("tests", broker=broker_url)
    with app.connection_for_write() as conn:
        for i in range(count):
            app.send_task("workers.tasks.noop", args=[i], queue=queue, connection=conn)


async def deployment(cluster: Cluster, name: str, replicas: int, **labels: str) -> None:
    await cluster.create(
        "apps/v1",
        "deployments",
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels or {"app": name}},
                "template": {"metadata": {"labels": labels or {"app": name}}},
            },
        },
    )


def policy(target: str, secret: str, queue: str, **overrides: Any) -> dict[str, Any]:
    return {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 1,
        "maxReplicas": 5,
        "metric": {
            "celeryQueue": {
                "redisSecretRef": {"name": secret, "key": "url"},
                "queues": [queue],
                "targetPerReplica": 10,
            }
        },
        "pollInterval": 1,
        "scaleUp": {"stabilizationSeconds": 0, "maxStep": 2},
        "scaleDown": {"stabilizationSeconds": 3, "maxStep": 1},
        "drainBeforeScaleDown": False,
        **overrides,
    }


def scaled(cluster: Cluster, name: str) -> list[str]:
    return [e["message"].split(" (")[0] for e in cluster.events(name) if e["reason"] == "Scaled"]


async def test_scales_up_with_the_queue_and_down_after_it_drains(
    cluster: Cluster, broker_url: str
) -> None:
    await cluster.secret("redis-up", url=broker_url)
    await deployment(cluster, "wk-up", 1)
    enqueue(broker_url, "q-up", 100)  # 10 replicas' worth; the maximum is 5

    spec = policy("wk-up", "redis-up", "q-up")
    # A window well past the pause below, however long the checks above took.
    spec["scaleDown"]["stabilizationSeconds"] = 6
    await cluster.apply("scalingpolicies", "wk-up", spec)
    await eventually(lambda: cluster.replicas("wk-up") == 5)
    # Two at a time, and never past the maximum.
    # Events are posted after the handler returns: wait for them, then compare.
    await eventually(lambda: len(scaled(cluster, "wk-up")) == 2)
    assert scaled(cluster, "wk-up") == ["Deployment wk-up 1 -> 3", "Deployment wk-up 3 -> 5"]
    status = cluster.resource("scalingpolicies", "wk-up")["status"]
    assert status["observedValue"] == 100
    assert (
        condition(cluster.resource("scalingpolicies", "wk-up"), "ScalingLimited")["reason"]
        == "TooManyReplicas"
    )

    redis.Redis.from_url(broker_url).delete("q-up")  # the queue drains
    await asyncio.sleep(2)
    assert cluster.replicas("wk-up") == 5  # still inside the down-stabilisation window
    await eventually(lambda: cluster.replicas("wk-up") == 1, timeout=40)
    await eventually(lambda: len(scaled(cluster, "wk-up")) == 6)
    assert scaled(cluster, "wk-up")[2:] == [
        "Deployment wk-up 5 -> 4",
        "Deployment wk-up 4 -> 3",
        "Deployment wk-up 3 -> 2",
        "Deployment wk-up 2 -> 1",
    ]
    await asyncio.sleep(2)
    assert cluster.replicas("wk-up") == 1  # the minimum holds


async def test_an_unreadable_metric_holds_the_replicas(cluster: Cluster) -> None:
    await cluster.secret("redis-down", url=f"redis://127.0.0.1:{free_port()}/0")
    await deployment(cluster, "wk-dark", 3)
    await cluster.apply("scalingpolicies", "wk-dark", policy("wk-dark", "redis-down", "q"))

    cond = await eventually(
        lambda: condition(cluster.resource("scalingpolicies", "wk-dark"), "MetricAvailable")
    )
    assert cond["status"] == "False"
    assert "Redis" in cond["message"]
    await asyncio.sleep(3)
    assert cluster.replicas("wk-dark") == 3  # never collapsed to the minimum
    status = cluster.resource("scalingpolicies", "wk-dark")["status"]
    assert status["desiredReplicas"] == 3
    await eventually(lambda: cluster.events("wk-dark"))
    assert [e["reason"] for e in cluster.events("wk-dark")] == ["MetricUnavailable"]
