"""ScalingPolicy: size a Deployment (the Celery workers, or the API) on a live signal.

Celery's signal is every task not finished: waiting in the queue lists plus the
broker's ``unacked`` entries (prefetched and running tasks, with late acks), counted by
the core's ``queue_depth``. An unreadable metric holds the replica count.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import kopf
from redis.asyncio import Redis
from redis.exceptions import RedisError

from amrutam.infra.queues import queue_depth
from amrutam_operator import conditions, drain, kube, metrics
from amrutam_operator.autoscale import Decision, History, decide, recommend
from amrutam_operator.config import GROUP, VERSION, settings

KIND = "ScalingPolicy"
METRIC_TIMEOUT_S = 5.0


class MetricUnavailable(Exception):
    pass


async def _celery_depth(namespace: str, source: dict[str, Any]) -> tuple[float, str]:
    url = await kube.secret_value(namespace, source["redisSecretRef"])
    redis = Redis.from_url(url, socket_timeout=METRIC_TIMEOUT_S, socket_connect_timeout=2)
    try:
        depth = await queue_depth(redis, list(source["queues"]))
    except (RedisError, OSError) as exc:
        raise MetricUnavailable(f"Redis: {exc}") from exc
    finally:
        await redis.aclose()
    return float(sum(depth.values())), url


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


async def read_metric(namespace: str, metric: dict[str, Any]) -> tuple[float, str | None]:
    """The metric's value, and the Celery broker URL when the source is a queue."""
    if "celeryQueue" in metric:
        try:
            return await _celery_depth(namespace, metric["celeryQueue"])
        except kube.MissingReference as exc:
            raise MetricUnavailable(str(exc)) from exc
    return await _prometheus(metric["prometheus"]), None


def _due(memo: kopf.Memo, spec: kopf.Spec, generation: int | None) -> bool:
    last = memo.get("polled")
    changed = memo.get("generation") != generation
    return changed or last is None or time.monotonic() - last >= float(spec.get("pollInterval", 15))


async def _scale_down(
    namespace: str,
    spec: kopf.Spec,
    memo: kopf.Memo,
    current: int,
    decision: Decision,
    broker: str | None,
) -> tuple[int, str | None]:
    """The replica count to set now, and a note when a drain holds it back."""
    draining = memo.get("draining")
    if not spec.get("drainBeforeScaleDown", True) or broker is None:
        return decision.desired, None
    target = spec["targetRef"]
    if draining is None:
        victims = drain.choose(
            await kube.target_pods(namespace, target), current - decision.desired
        )
        if not victims:
            return decision.desired, None
        queues = await drain.start(namespace, broker, victims)
        memo["draining"] = {"pods": victims, "queues": queues, "since": time.monotonic()}
        return current, f"draining {', '.join(victims)} before scaling down"
    held = await drain.busy(broker, draining["pods"])
    overdue = time.monotonic() - draining["since"] > settings().drain_timeout_s
    if held and not overdue:
        return current, f"waiting for {held} tasks on {', '.join(draining['pods'])}"
    memo.pop("draining")
    return max(decision.desired, current - len(draining["pods"])), None


@kopf.timer(GROUP, VERSION, "scalingpolicies", interval=settings().tick_s)
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
    if spec.get("suspend"):
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = conditions.merged(
            old,
            [conditions.condition("Active", False, "Suspended", "spec.suspend is true")],
            generation,
        )
        return
    if not _due(memo, spec, generation):
        return
    memo["polled"], memo["generation"] = time.monotonic(), generation
    history: History = memo.setdefault("history", History(started=time.monotonic()))
    target = spec["targetRef"]

    try:
        current = await kube.replicas(namespace, target)
    except kube.MissingReference as exc:
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = conditions.merged(
            old, [conditions.condition("Active", False, "TargetMissing", str(exc))], generation
        )
        kopf.warn(body, reason="TargetMissing", message=str(exc))
        metrics.failed(KIND)
        return

    found: list[dict[str, Any]] = [conditions.condition("Active", True, "Scaling", "")]
    patch.status.update({"observedGeneration": generation, "currentReplicas": current})
    try:
        value, broker = await read_metric(namespace, spec["metric"])
    except MetricUnavailable as exc:
        # Hold: never collapse to the minimum because the signal went dark.
        found.append(conditions.condition("MetricAvailable", False, "MetricUnreadable", str(exc)))
        patch.status["desiredReplicas"] = current
        patch.status["conditions"] = conditions.merged(old, found, generation)
        conditions.warn_once(
            memo, "metric_down", True, body, "MetricUnavailable", f"holding {current}: {exc}"
        )
        metrics.failed(KIND)
        return
    conditions.warn_once(memo, "metric_down", False, body, "MetricUnavailable", "")
    found.append(conditions.condition("MetricAvailable", True, "MetricRead", f"value {value:g}"))

    decision = decide(
        current, recommend(value, current, spec["metric"]), spec, history, time.monotonic()
    )
    replicas, note = decision.desired, None
    if memo.get("draining") and decision.desired >= current:
        held = memo.pop("draining")
        await drain.cancel(namespace, broker or "", held["pods"], held["queues"])
    elif decision.desired < current:
        replicas, note = await _scale_down(namespace, spec, memo, current, decision, broker)

    found.append(
        conditions.condition(
            "ScalingLimited",
            decision.limited is not None or note is not None,
            decision.limited or ("Draining" if note else "DesiredWithinRange"),
            note or f"recommended {decision.recommended}",
        )
    )
    if replicas != current:
        await kube.scale(namespace, target, replicas)
        patch.status["lastScaleTime"] = conditions.now_iso()
        kopf.info(
            body,
            reason="Scaled",
            message=f"{target['kind']} {target['name']} {current} -> {replicas} (value {value:g})",
        )
    patch.status.update(
        {
            "currentReplicas": replicas,
            "desiredReplicas": decision.desired,
            "observedValue": value,
            "conditions": conditions.merged(old, found, generation),
        }
    )
    metrics.succeeded(KIND, namespace, name)
