"""ScalingPolicy: size a Deployment (the Celery workers, or the API) on a live signal.

Celery's signal is every task not finished: waiting in the queue lists plus the
broker's ``unacked`` entries (prefetched and running tasks, with late acks), counted by
the core's ``queue_depth``. An unreadable metric holds the replica count, or after
``fallback.afterFailures`` reads applies ``fallback.replicas``; ``paused`` holds a fixed
count. A workload another autoscaler also sizes (an HPA, another ScalingPolicy) is left
alone and reported, never fought over. A scale-down first drains the workers the
ReplicaSet will remove (``drain``), with the drain's state on the pods themselves.

A poll and the policy's deletion take turns (``turns``): a drain that a poll in flight
starts is given back by the deletion, never left on a pod after it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
from redis.asyncio import Redis
from redis.exceptions import RedisError

from amrutam.infra.queues import queue_depth
from amrutam_operator import conditions, drain, kube, metrics, replicaset, turns
from amrutam_operator.autoscale import Decision, History, decide, recommend
from amrutam_operator.config import GROUP, VERSION, settings

KIND = "ScalingPolicy"
METRIC_TIMEOUT_S = 5.0


class MetricUnavailable(Exception):
    pass


async def _celery_depth(redis_url: str, source: dict[str, Any]) -> float:
    redis = Redis.from_url(redis_url, socket_timeout=METRIC_TIMEOUT_S, socket_connect_timeout=2)
    try:
        depth = await queue_depth(redis, list(source["queues"]))
    except (RedisError, OSError) as exc:
        raise MetricUnavailable(f"Redis: {exc}") from exc
    finally:
        await redis.aclose()
    return float(sum(depth.values()))


async def _prometheus(source: dict[str, Any]) -> float:
    url = source["serverAddress"].rstrip("/") + "/api/v1/query"
    timeout = aiohttp.ClientTimeout(total=METRIC_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, params={"query": source["query"]}) as response,
        ):
            response.raise_for_status()
            result = (await response.json())["data"]["result"]
        return float(result[0]["value"][1])
    except (aiohttp.ClientError, TimeoutError, KeyError, IndexError, ValueError) as exc:
        raise MetricUnavailable(f"Prometheus: {exc!r}") from exc


async def broker_of(namespace: str, metric: dict[str, Any]) -> str | None:
    """The Celery broker's URL when the metric is a queue (what drains talk to)."""
    if "celeryQueue" not in metric:
        return None
    try:
        return await kube.secret_value(namespace, metric["celeryQueue"]["redisSecretRef"])
    except kube.MissingReference:
        return None


async def read_metric(metric: dict[str, Any], broker: str | None) -> float:
    if "celeryQueue" in metric:
        if broker is None:
            raise MetricUnavailable("the Redis secret is missing or has no such key")
        return await _celery_depth(broker, metric["celeryQueue"])
    return await _prometheus(metric["prometheus"])


def _due(memo: kopf.Memo, spec: kopf.Spec, generation: int | None) -> bool:
    last = memo.get("polled")
    changed = memo.get("generation") != generation
    return changed or last is None or time.monotonic() - last >= float(spec.get("pollInterval", 15))


def _same_target(ref: dict[str, Any] | None, target: dict[str, Any]) -> bool:
    return (
        bool(ref)
        and (ref or {}).get("kind") == target["kind"]
        and (ref or {}).get("name") == target["name"]
    )


async def rivals(namespace: str, name: str, target: dict[str, Any]) -> list[str]:
    """Other autoscalers of the same workload: HPAs and other ScalingPolicies."""
    found = [
        f"HorizontalPodAutoscaler {h['metadata']['name']}"
        for h in await kube.autoscalers(namespace)
        if _same_target((h.get("spec") or {}).get("scaleTargetRef"), target)
    ]
    found += [
        f"ScalingPolicy {p['metadata']['name']}"
        for p in await kube.scaling_policies(namespace)
        if p["metadata"]["name"] != name
        and not p["metadata"].get("deletionTimestamp")
        and _same_target((p.get("spec") or {}).get("targetRef"), target)
    ]
    return sorted(found)


async def release(namespace: str, name: str, target: dict[str, Any], broker: str | None) -> None:
    """Undo this policy's drains: the workers consume again, the pods are unmarked."""
    try:
        pods = await kube.target_pods(namespace, target)
    except kube.MissingReference:
        return
    held = list(drain.draining(pods, name).values())
    if held:
        await drain.cancel(namespace, broker, held)


def _draining_status(drains: dict[str, drain.Drain]) -> list[dict[str, str]]:
    return [{"pod": d.pod, "since": d.since.isoformat()} for d in drains.values()]


async def _scale_down(
    namespace: str, name: str, spec: kopf.Spec, current: int, desired: int, broker: str | None
) -> tuple[int, str | None, list[dict[str, str]]]:
    """The replica count to set now, a note when a drain holds it back, the drains."""
    if not spec.get("drainBeforeScaleDown", True) or broker is None:
        return desired, None, []
    target = spec["targetRef"]
    pods = await kube.target_pods(namespace, target)
    drains = drain.draining(pods, name)
    if not drains:
        active = sum(replicaset.active(p) for p in pods)
        victims = replicaset.removed(pods, active - desired)
        if not victims:
            return desired, None, []
        await drain.start(namespace, name, broker, victims)
        drains = drain.draining(await kube.target_pods(namespace, target), name)
        note = f"draining {', '.join(victims)} before scaling down"
        return current, note, _draining_status(drains)
    if stale := await _given_back_if_stale(namespace, target, broker, drains):
        return current, stale, []
    now = datetime.now(UTC)
    held = await drain.busy(broker, list(drains.values()))
    overdue = max(d.age(now) for d in drains.values()) > settings().drain_timeout_s
    if held and not overdue:
        names = ", ".join(drains)
        return current, f"waiting for {held} tasks on {names}", _draining_status(drains)
    if stale := await _given_back_if_stale(namespace, target, broker, drains):
        return current, stale, []  # (checked again: asking the workers took a while)
    return max(desired, current - len(drains)), None, []


async def _given_back_if_stale(
    namespace: str, target: dict[str, Any], broker: str, drains: dict[str, drain.Drain]
) -> str | None:
    """The scale-down must remove exactly the drained pods: a pod that turned unready (or
    a new Pending one) ranks before any deletion cost and would go instead. Then the
    drain is given back (it is chosen again on the next poll) and a note says why."""
    removing = replicaset.removed(await kube.target_pods(namespace, target), len(drains))
    if set(removing) == set(drains):
        return None
    await drain.cancel(namespace, broker, list(drains.values()))
    others = ", ".join(sorted(set(removing) - set(drains)))
    return f"{others} would be removed instead: drain started over"


def _ready(found: list[dict[str, Any]]) -> dict[str, Any]:
    parts = [c for c in found if c["type"] in ("Active", "MetricAvailable")]
    return conditions.summary(parts, "Scaling", "sizing the target on its metric")


@kopf.timer(GROUP, VERSION, "scalingpolicies", interval=settings().tick_s)
@turns.poll
async def reconcile(
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    namespace: str | None,
    name: str,
    **_: Any,
) -> None:
    generation, namespace = meta.get("generation"), namespace or "default"
    old = status.get("conditions")
    target = dict(spec["targetRef"])

    def report(found: list[dict[str, Any]], ready: dict[str, Any] | None = None) -> None:
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = conditions.merged(
            old, [*found, ready or _ready(found)], generation
        )

    if spec.get("suspend"):
        if memo.get("may_drain", True):  # once per suspension (and after a restart)
            await release(namespace, name, target, await broker_of(namespace, spec["metric"]))
            memo["may_drain"] = False
        patch.status["draining"] = []
        suspended = conditions.condition("Active", False, "Suspended", "spec.suspend is true")
        report([suspended], conditions.condition("Ready", True, "Suspended", "not scaling"))
        return
    if not _due(memo, spec, generation):
        return
    memo["polled"], memo["generation"] = time.monotonic(), generation
    history: History = memo.setdefault("history", History(started=time.monotonic()))
    broker = await broker_of(namespace, spec["metric"])

    refusal = None
    if target["kind"] == "StatefulSet" and spec.get("drainBeforeScaleDown", True):
        refusal = ("DrainUnsupported", "a StatefulSet removes its highest ordinal: no drain")
    elif found_rivals := await rivals(namespace, name, target):
        refusal = ("ConflictingAutoscaler", f"also sized by {', '.join(found_rivals)}")
    if refusal:
        if memo.get("may_drain", True):  # once per refusal (and after a restart)
            await release(namespace, name, target, broker)
            memo["may_drain"] = False
        patch.status["draining"] = []
        report([conditions.condition("Active", False, *refusal)])
        conditions.warn_once(memo, "refused", True, body, refusal[0], refusal[1])
        metrics.failed(KIND)
        return
    conditions.warn_once(memo, "refused", False, body, "", "")

    try:
        current = await kube.replicas(namespace, target)
    except kube.MissingReference as exc:
        report([conditions.condition("Active", False, "TargetMissing", str(exc))])
        kopf.warn(body, reason="TargetMissing", message=str(exc))
        metrics.failed(KIND)
        return
    patch.status["currentReplicas"] = current

    found: list[dict[str, Any]] = [conditions.condition("Active", True, "Scaling", "")]
    decision: Decision | None = None
    value: float | None = None
    paused = spec.get("paused")
    if paused:
        fixed = int(paused["replicas"])
        decision = Decision(desired=fixed, recommended=fixed, limited="Paused")
        found[0] = conditions.condition("Active", True, "Paused", f"holding {fixed} replicas")
    try:
        value = await read_metric(spec["metric"], broker)
    except MetricUnavailable as exc:
        memo["failures"] = memo.get("failures", 0) + 1
        found.append(conditions.condition("MetricAvailable", False, "MetricUnreadable", str(exc)))
        fallback = spec.get("fallback")
        if decision is None and fallback and memo["failures"] >= int(fallback["afterFailures"]):
            fixed = int(fallback["replicas"])
            decision = Decision(desired=fixed, recommended=fixed, limited="Fallback")
        conditions.warn_once(
            memo, "metric_down", True, body, "MetricUnavailable", f"metric unreadable: {exc}"
        )
        metrics.failed(KIND)
    else:
        memo["failures"] = 0
        conditions.warn_once(memo, "metric_down", False, body, "MetricUnavailable", "")
        found.append(conditions.condition("MetricAvailable", True, "MetricRead", f"{value:g}"))
        if decision is None:
            raw = recommend(value, current, spec["metric"])
            decision = decide(current, raw, spec, history, time.monotonic())
    # Absent (not stale) while the metric cannot be read.
    patch.status["observedValue"] = value
    if decision is None:  # unreadable, no fallback yet: hold
        patch.status["desiredReplicas"] = current
        report(found)
        return

    replicas, note = decision.desired, None
    draining: list[dict[str, str]] = []
    if decision.desired >= current:
        # No more scale-down: a drain in flight (or one a previous run of the operator
        # left on the pods) is undone. Looked for after a start and after a drain only.
        if memo.get("may_drain", True):
            await release(namespace, name, target, broker)
            memo["may_drain"] = False
    else:
        memo["may_drain"] = True
        replicas, note, draining = await _scale_down(
            namespace, name, spec, current, decision.desired, broker
        )
    patch.status["draining"] = draining
    found.append(
        conditions.condition(
            "ScalingLimited",
            decision.limited is not None or note is not None,
            "Draining" if note else decision.limited or "DesiredWithinRange",
            note or f"recommended {decision.recommended}",
        )
    )
    if replicas != current:
        await kube.scale(namespace, target, replicas)
        patch.status["lastScaleTime"] = conditions.now_iso()
        shown = f"value {value:g}" if value is not None else decision.limited
        kopf.info(
            body,
            reason="Scaled",
            message=f"{target['kind']} {target['name']} {current} -> {replicas} ({shown})",
        )
    patch.status.update({"currentReplicas": replicas, "desiredReplicas": decision.desired})
    report(found)
    if value is not None:
        metrics.succeeded(KIND, namespace, name)


@kopf.on.delete(GROUP, VERSION, "scalingpolicies")
async def forget(
    spec: kopf.Spec, memo: kopf.Memo, namespace: str | None, name: str, **_: Any
) -> None:
    """A deleted policy leaves no worker drained (no consumer cancelled, no pod marked),
    not even by a poll that was running when it was deleted."""
    async with turns.deletion(memo):
        namespace = namespace or "default"
        broker = await broker_of(namespace, dict(spec.get("metric") or {}))
        await release(namespace, name, dict(spec["targetRef"]), broker)
