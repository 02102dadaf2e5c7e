"""Safe scale-in: a drain never kills a busy worker nor strands an idle one, whatever
happens around it (kubernetes review D4, D13, D19; OPERATOR.md revision 2).

The emulator runs no ReplicaSet controller, so ``replicaset_controller`` plays it: when
the Deployment wants fewer pods than are active, it marks terminating the ones the
controller removes (``amrutam_operator.replicaset``, whose ranking is tested apart).
Pods carry a finalizer standing for their grace period, so a deleted pod stays visible
as terminating, as it does while its kubelet stops it. Workers are real Celery processes
named ``celery@<pod>``; their consumers are read back from them, not from the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import redis
from amrutam_operator import scaling
from amrutam_operator.drain import DRAINING
from amrutam_operator.replicaset import DELETION_COST, active, removal_order
from celery import Celery

from amrutam.dev.servers import RedisServer, free_port
from tests.factories import pg_dsn
from tests.operator.conftest import Cluster, condition, eventually, series
from tests.operator.test_scaling import deployment, enqueue, policy, scaled
from tests.workers.conftest import Worker, worker_env

pytestmark = pytest.mark.asyncio(loop_scope="package")
GRACE = "test.amrutam.io/grace-period"


@pytest.fixture(scope="module")
def broker_url(redis_server: RedisServer) -> str:
    url = redis_server.url(8)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest_asyncio.fixture(autouse=True, loop_scope="package")
async def one_test_at_a_time(cluster: Cluster, broker_url: str) -> AsyncIterator[None]:
    """Each test's policies go when it ends (a drain left polling silent workers would
    slow the next), and so do the tasks its workers held."""
    yield
    await cluster.forget_custom_resources()
    redis.Redis.from_url(broker_url).flushdb()


@pytest.fixture
def workers(database_url: str, broker_url: str) -> Iterator[dict[str, Worker]]:
    """The test's Celery workers by pod name (``start_worker``), stopped after it."""
    running: dict[str, Worker] = {}
    yield running
    for worker in running.values():
        worker.stop()


def start_worker(running: dict[str, Worker], database_url: str, broker_url: str, pod: str) -> None:
    # No statement timeout: a task held up on purpose (``a_task_running``) must not fail.
    env = {
        **worker_env(database_url, broker_url, free_port()),
        "AMRUTAM_DB_STATEMENT_TIMEOUT_MS": "0",
    }
    running[pod] = Worker(env, node=f"celery@{pod}").start()


def consumed(broker_url: str, pod: str) -> list[str] | None:
    control = Celery("tests", broker=broker_url).control
    found = control.inspect(destination=[f"celery@{pod}"], timeout=2).active_queues()
    if not found:
        return None
    return sorted(q["name"] for q in found[f"celery@{pod}"])


@contextlib.asynccontextmanager
async def a_task_running(broker_url: str, database_url: str, pod: str) -> AsyncIterator[None]:
    """The worker of ``pod`` runs a task (it reports it active) until the block ends: the
    task waits for a lock the test holds. (A task waiting for its ETA would not do: it
    is neither active nor reserved, and goes back to the queue when its worker stops.)"""
    holder = await asyncpg.connect(pg_dsn(database_url))
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE appointments IN SHARE MODE")
            Celery("tests", broker=broker_url).send_task(
                "workers.tasks.mark_no_shows", queue="maintenance"
            )
            inspect = Celery("tests", broker=broker_url).control.inspect(
                destination=[f"celery@{pod}"], timeout=2
            )
            await eventually(lambda: (inspect.active() or {}).get(f"celery@{pod}"))
            yield
    finally:
        await holder.close()


def pods_of(cluster: Cluster, app: str) -> list[dict[str, Any]]:
    return [
        obj.raw
        for key, obj in list(cluster.emulator.objects.items())
        if key[0] == "v1/pods"
        and not obj.deleted
        and (obj.raw["metadata"].get("labels") or {}).get("app") == app
    ]


async def pod(cluster: Cluster, app: str, name: str, created: str, **status: Any) -> None:
    await cluster.create(
        "v1",
        "pods",
        {
            "metadata": {"name": name, "labels": {"app": app}, "finalizers": [GRACE]},
            "spec": {"nodeName": f"node-{name}", "containers": [{"name": "worker"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                **status,
            },
        },
    )
    await cluster.patch("v1", "pods", name, {"metadata": {"creationTimestamp": created}})


def status_of(cluster: Cluster, policy_name: str) -> dict[str, Any]:
    return dict(cluster.resource("scalingpolicies", policy_name).get("status") or {})


def terminating(cluster: Cluster, name: str) -> bool:
    return bool(cluster.get("v1", "pods", name)["metadata"].get("deletionTimestamp"))


def annotations(cluster: Cluster, name: str) -> dict[str, str]:
    return dict(cluster.get("v1", "pods", name)["metadata"].get("annotations") or {})


@contextlib.asynccontextmanager
async def replicaset_controller(cluster: Cluster, app: str) -> AsyncIterator[None]:
    """What the Deployment's ReplicaSet does on a scale-down: terminate the pods it ranks
    first until the active ones match the replicas."""

    async def loop() -> None:
        while True:
            pods = pods_of(cluster, app)
            excess = sum(active(p) for p in pods) - cluster.replicas(app)
            for name in removal_order(pods)[: max(excess, 0)]:
                await cluster.delete("pods", name, api="v1")
            await asyncio.sleep(0.1)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def two_pods(cluster: Cluster, app: str, replicas: int = 2) -> None:
    await deployment(cluster, app, replicas, app=app)
    await pod(cluster, app, f"{app}-old", "2026-01-01T00:00:00Z")
    await pod(cluster, app, f"{app}-new", "2026-01-02T00:00:00Z")


async def left_draining(
    cluster: Cluster, pod_name: str, policy_name: str, queues: list[str]
) -> None:
    """The marks a run of the operator that stopped mid-drain leaves on a pod."""
    state = {"policy": policy_name, "since": datetime.now(UTC).isoformat(), "queues": queues}
    marks = {DELETION_COST: "-1000", DRAINING: json.dumps(state)}
    await cluster.patch("v1", "pods", pod_name, {"metadata": {"annotations": marks}})


def draining_policy(app: str, **overrides: Any) -> dict[str, Any]:
    spec = policy(app, f"redis-{app}", f"q-{app}", drainBeforeScaleDown=True, **overrides)
    spec["scaleDown"]["stabilizationSeconds"] = 0
    return spec


async def test_a_terminating_pod_is_never_the_one_drained(
    cluster: Cluster, broker_url: str, database_url: str, workers: dict[str, Worker]
) -> None:
    app = "wk-term"
    start_worker(workers, database_url, broker_url, f"{app}-new")
    await cluster.secret(f"redis-{app}", url=broker_url)
    await two_pods(cluster, app)
    # The newest pod of all is already terminating: the old code chose it, and the
    # scale-down then removed a live worker that nobody had drained.
    await pod(cluster, app, f"{app}-leaving", "2026-01-03T00:00:00Z")
    await cluster.delete("pods", f"{app}-leaving", api="v1")
    async with replicaset_controller(cluster, app):
        await cluster.apply("scalingpolicies", app, draining_policy(app))
        await eventually(lambda: cluster.replicas(app) == 1, timeout=40)
        # The newest live pod was chosen, marked for the ReplicaSet, and its worker let
        # go of every queue before the Deployment shrank; the ReplicaSet removed it.
        await eventually(lambda: terminating(cluster, f"{app}-new"))
    assert annotations(cluster, f"{app}-new")[DELETION_COST] == "-1000"
    assert consumed(broker_url, f"{app}-new") == []
    assert DRAINING not in annotations(cluster, f"{app}-leaving")
    assert annotations(cluster, f"{app}-old") == {}
    assert not terminating(cluster, f"{app}-old")
    assert scaled(cluster, app) == [f"Deployment {app} 2 -> 1"]


async def test_a_worker_that_does_not_answer_counts_as_busy(
    cluster: Cluster, broker_url: str
) -> None:
    app = "wk-mute"  # running pods, but no worker answers for them
    await cluster.secret(f"redis-{app}", url=broker_url)
    await two_pods(cluster, app)
    await cluster.apply("scalingpolicies", app, draining_policy(app))
    status = await eventually(
        lambda: cluster.resource("scalingpolicies", app)["status"]["draining"]
    )
    assert [d["pod"] for d in status] == [f"{app}-new"]
    assert json.loads(annotations(cluster, f"{app}-new")[DRAINING])["policy"] == app
    limited = await eventually(
        lambda: (
            "waiting for 1 tasks"
            in condition(cluster.resource("scalingpolicies", app), "ScalingLimited")["message"]
        )
    )
    assert limited
    await asyncio.sleep(3)
    assert cluster.replicas(app) == 2  # not scaled while its tasks are unknown


async def test_restart_mid_drain_gives_back_a_drain_no_longer_wanted(
    cluster: Cluster, broker_url: str, database_url: str, workers: dict[str, Worker]
) -> None:
    """A drain a previous run of the operator left: the pod is marked, the worker's
    consumers are cancelled. A fresh run that no longer wants to shrink undoes it."""
    app = "wk-restart"
    start_worker(workers, database_url, broker_url, f"{app}-new")
    await cluster.secret(f"redis-{app}", url=broker_url)
    await two_pods(cluster, app)
    await left_draining(cluster, f"{app}-new", app, ["notifications"])
    control = Celery("tests", broker=broker_url).control
    control.cancel_consumer("notifications", destination=[f"celery@{app}-new"], reply=True)
    assert "notifications" not in (consumed(broker_url, f"{app}-new") or [])
    enqueue(broker_url, f"q-{app}", 15)  # two replicas' worth: no scale-down wanted

    await cluster.apply("scalingpolicies", app, draining_policy(app))
    await eventually(lambda: DRAINING not in annotations(cluster, f"{app}-new"))
    assert DELETION_COST not in annotations(cluster, f"{app}-new")
    await eventually(lambda: "notifications" in (consumed(broker_url, f"{app}-new") or []))
    assert cluster.replicas(app) == 2


async def test_restart_mid_drain_finishes_the_drain_it_finds(
    cluster: Cluster, broker_url: str, database_url: str, workers: dict[str, Worker]
) -> None:
    app = "wk-resume"
    start_worker(workers, database_url, broker_url, f"{app}-old")
    await cluster.secret(f"redis-{app}", url=broker_url)
    await two_pods(cluster, app)
    # The previous run chose the old pod (whatever its reason): this run goes on with it
    # rather than draining a second worker.
    await left_draining(cluster, f"{app}-old", app, ["default"])
    async with replicaset_controller(cluster, app):
        await cluster.apply("scalingpolicies", app, draining_policy(app))
        await eventually(lambda: cluster.replicas(app) == 1, timeout=40)
        await eventually(lambda: terminating(cluster, f"{app}-old"))
    assert DRAINING not in annotations(cluster, f"{app}-new")


async def test_a_task_waiting_for_its_eta_does_not_hold_a_drain_and_is_not_lost(
    cluster: Cluster, broker_url: str, database_url: str, workers: dict[str, Worker]
) -> None:
    """A retry's countdown can last minutes: the drain does not wait for it, because the
    worker stopping (SIGTERM, as from its kubelet) puts it back in its queue."""
    app = "wk-eta"
    start_worker(workers, database_url, broker_url, f"{app}-new")
    Celery("tests", broker=broker_url).send_task(
        "workers.tasks.mark_no_shows", queue="maintenance", countdown=300
    )
    broker = redis.Redis.from_url(broker_url)
    await eventually(lambda: broker.hlen("unacked") == 1)  # the worker holds it
    await cluster.secret(f"redis-{app}", url=broker_url)
    await two_pods(cluster, app)
    await cluster.apply("scalingpolicies", app, draining_policy(app))
    await eventually(lambda: cluster.replicas(app) == 1)

    workers[f"{app}-new"].stop()
    assert (broker.llen("maintenance"), broker.hlen("unacked")) == (1, 0)


@pytest.mark.parametrize("how", ["suspend", "delete"])
async def test_a_drain_is_given_back_when_the_policy_is_suspended_or_deleted(
    cluster: Cluster, broker_url: str, database_url: str, workers: dict[str, Worker], how: str
) -> None:
    app = f"wk-{how}"
    start_worker(workers, database_url, broker_url, f"{app}-new")
    async with a_task_running(broker_url, database_url, f"{app}-new"):  # the drain holds
        await cluster.secret(f"redis-{app}", url=broker_url)
        await two_pods(cluster, app)
        spec = draining_policy(app)
        await cluster.apply("scalingpolicies", app, spec)
        await eventually(lambda: DRAINING in annotations(cluster, f"{app}-new"))
        await eventually(lambda: consumed(broker_url, f"{app}-new") == [])

        if how == "suspend":
            await cluster.apply("scalingpolicies", app, {**spec, "suspend": True})
        else:
            await cluster.delete("scalingpolicies", app)
        await eventually(lambda: DRAINING not in annotations(cluster, f"{app}-new"))
    assert DELETION_COST not in annotations(cluster, f"{app}-new")
    queues = await eventually(lambda: consumed(broker_url, f"{app}-new"))
    assert queues == ["default", "maintenance", "notifications"]
    assert cluster.replicas(app) == 2


async def test_a_poll_running_when_its_policy_is_deleted_drains_nothing_after_the_release(
    cluster: Cluster,
    broker_url: str,
    database_url: str,
    workers: dict[str, Worker],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf calls the deletion handler while a poll of the policy's timer is still running
    (it only asks the timer to stop, and a poll may even start after it): the deletion's
    release must come after anything that poll drains, or the pod stays drained."""
    app = "wk-race"
    start_worker(workers, database_url, broker_url, f"{app}-new")
    await cluster.secret(f"redis-{app}", url=broker_url)
    await two_pods(cluster, app)
    polling, go_on = threading.Event(), threading.Event()
    steps: list[str] = []
    read, start, release = scaling.read_metric, scaling.drain.start, scaling.release

    async def held_read(metric: dict[str, Any], broker: str | None) -> float:
        if f"q-{app}" in json.dumps(metric):  # this policy's polls wait here
            polling.set()
            await asyncio.to_thread(go_on.wait, 30)
        return await read(metric, broker)

    async def noted_start(namespace: str, policy: str, *args: Any) -> None:
        if policy == app:  # (other tests' policies may still be polling)
            steps.append("drain")
        await start(namespace, policy, *args)

    async def noted_release(namespace: str, policy: str, *args: Any) -> None:
        if policy == app:
            steps.append("release")
        await release(namespace, policy, *args)

    monkeypatch.setattr(scaling, "read_metric", held_read)
    monkeypatch.setattr(scaling.drain, "start", noted_start)
    monkeypatch.setattr(scaling, "release", noted_release)
    await cluster.apply("scalingpolicies", app, draining_policy(app))
    await eventually(polling.is_set)
    await cluster.delete("scalingpolicies", app)
    await asyncio.sleep(2)  # the operator has seen the deletion while the poll waits
    go_on.set()  # the poll goes on: it scales down, so it drains the newest pod

    await eventually(lambda: cluster.gone("scalingpolicies", app))
    assert steps[0] == "drain", steps  # the deletion waited for the poll
    assert "drain" not in steps[1:], steps  # and no poll drained after it
    assert series("ScalingPolicy", app) == []  # the poll's success went with the policy
    assert DRAINING not in annotations(cluster, f"{app}-new")
    assert DELETION_COST not in annotations(cluster, f"{app}-new")
    queues = await eventually(lambda: consumed(broker_url, f"{app}-new"))
    assert queues == ["default", "maintenance", "notifications"]


async def test_a_pod_turning_unready_mid_drain_is_not_replaced_by_the_drained_one(
    cluster: Cluster, broker_url: str, database_url: str, workers: dict[str, Worker]
) -> None:
    """The ReplicaSet ranks an unready pod before any deletion cost: scaling down now
    would remove that (busy, undrained) worker and keep the drained one idle forever."""
    app = "wk-unready"
    start_worker(workers, database_url, broker_url, f"{app}-new")
    async with a_task_running(broker_url, database_url, f"{app}-new"):  # the drain holds
        await cluster.secret(f"redis-{app}", url=broker_url)
        await two_pods(cluster, app)
        await cluster.apply("scalingpolicies", app, draining_policy(app))
        await eventually(lambda: DRAINING in annotations(cluster, f"{app}-new"))
        unready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
        await cluster.patch("v1", "pods", f"{app}-old", unready)

        # The drain of the new pod is given back, and the unready one is drained instead.
        await eventually(lambda: DRAINING in annotations(cluster, f"{app}-old"))
        assert DRAINING not in annotations(cluster, f"{app}-new")
        queues = await eventually(lambda: consumed(broker_url, f"{app}-new"))
        assert "notifications" in queues
        assert cluster.replicas(app) == 2  # nothing was scaled on the stale choice


async def test_another_autoscaler_of_the_target_is_reported_not_fought(
    cluster: Cluster, broker_url: str
) -> None:
    app = "wk-rival"
    await cluster.secret(f"redis-{app}", url=broker_url)
    await deployment(cluster, app, 2)
    await cluster.create(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        {
            "metadata": {"name": f"{app}-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
                "minReplicas": 2,
                "maxReplicas": 4,
            },
        },
    )
    enqueue(broker_url, f"q-{app}", 50)  # would want five
    await cluster.apply("scalingpolicies", app, policy(app, f"redis-{app}", f"q-{app}"))
    ready = await eventually(lambda: condition(cluster.resource("scalingpolicies", app), "Ready"))
    assert (ready["status"], ready["reason"]) == ("False", "ConflictingAutoscaler")
    assert f"HorizontalPodAutoscaler {app}-hpa" in ready["message"]
    await asyncio.sleep(3)
    assert cluster.replicas(app) == 2
    assert [e["reason"] for e in cluster.events(app)] == ["ConflictingAutoscaler"]


async def test_paused_holds_a_fixed_count_whatever_the_metric(
    cluster: Cluster, broker_url: str
) -> None:
    app = "wk-paused"
    await cluster.secret(f"redis-{app}", url=broker_url)
    await deployment(cluster, app, 1)
    enqueue(broker_url, f"q-{app}", 50)
    spec = policy(app, f"redis-{app}", f"q-{app}", paused={"replicas": 3})
    await cluster.apply("scalingpolicies", app, spec)
    await eventually(lambda: cluster.replicas(app) == 3)
    await asyncio.sleep(2)
    assert cluster.replicas(app) == 3  # not five, as the queue would ask
    active_ = condition(cluster.resource("scalingpolicies", app), "Active")
    assert active_ is not None
    assert active_["reason"] == "Paused"


async def test_an_unreadable_metric_clears_the_value_then_applies_the_fallback(
    cluster: Cluster, broker_url: str
) -> None:
    app = "wk-fallback"
    dark = f"redis://127.0.0.1:{free_port()}/0"
    await cluster.secret(f"redis-{app}", url=broker_url)
    await deployment(cluster, app, 1)
    enqueue(broker_url, f"q-{app}", 20)
    spec = policy(app, f"redis-{app}", f"q-{app}", fallback={"replicas": 4, "afterFailures": 3})
    await cluster.apply("scalingpolicies", app, spec)
    await eventually(
        lambda: cluster.resource("scalingpolicies", app)["status"].get("observedValue")
    )

    await cluster.secret(f"redis-{app}", url=dark)  # the metric goes dark
    await eventually(lambda: "observedValue" not in status_of(cluster, app))
    ready = condition(cluster.resource("scalingpolicies", app), "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "MetricUnreadable")
    await eventually(lambda: cluster.replicas(app) == 4, timeout=20)
    # (the status follows the scale: kopf patches it when the handler returns)
    await eventually(
        lambda: (
            condition(cluster.resource("scalingpolicies", app), "ScalingLimited")["reason"]
            == "Fallback"
        )
    )


async def test_a_selector_with_expressions_still_finds_the_pods_to_drain(
    cluster: Cluster, broker_url: str
) -> None:
    app = "wk-expr"
    await cluster.secret(f"redis-{app}", url=broker_url)
    await cluster.create(
        "apps/v1",
        "deployments",
        {
            "metadata": {"name": app},
            "spec": {
                "replicas": 2,
                "selector": {
                    "matchExpressions": [{"key": "app", "operator": "In", "values": [app]}]
                },
                "template": {"metadata": {"labels": {"app": app}}},
            },
        },
    )
    await pod(cluster, app, f"{app}-old", "2026-01-01T00:00:00Z")
    await pod(cluster, app, f"{app}-new", "2026-01-02T00:00:00Z")
    await cluster.apply("scalingpolicies", app, draining_policy(app))
    # (the old code found no pods for such a selector and scaled down undrained)
    await eventually(lambda: DRAINING in annotations(cluster, f"{app}-new"))
    assert cluster.replicas(app) == 2
