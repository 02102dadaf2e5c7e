"""Which pods a Deployment's ReplicaSet removes when it shrinks, as its controller decides.

A model of the controller (``pkg/controller/controller_utils.go``: ``FilterActivePods``
and ``ActivePodsWithRanks.Less``, pod deletion cost on by default since 1.22), because a
drain is only safe if the pods drained are the ones removed. Terminating, Failed and
Succeeded pods are not active: the controller neither counts nor removes them. Among
active pods it removes first, in this order of precedence: a pod not yet on a node; a
Pending, then Unknown, before a Running pod; a pod not ready; a lower
``pod-deletion-cost``; a pod sharing its node with more of its siblings; the one ready for
less time; more restarts; the newest. Readiness ranks before the cost: a worker that
turns unready during a drain is removed instead of the drained one.

Pods are plain dicts, as the API serves them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_PHASE = {"Pending": 0, "Unknown": 1, "Running": 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return _EPOCH


def active(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    gone = (pod.get("metadata") or {}).get("deletionTimestamp")
    return not gone and status.get("phase") not in ("Succeeded", "Failed")


def _ready_since(pod: Mapping[str, Any]) -> datetime | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return _time(cond.get("lastTransitionTime"))
    return None


def cost(pod: Mapping[str, Any]) -> int:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(DELETION_COST, 0))
    except ValueError:
        return 0


def _rank(pod: Mapping[str, Any], siblings_on: Counter[str]) -> tuple[Any, ...]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    node = spec.get("nodeName") or ""
    since = _ready_since(pod)
    restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or [])
    created = _time((pod.get("metadata") or {}).get("creationTimestamp"))
    return (
        bool(node),
        _PHASE.get(status.get("phase") or "Pending", 0),
        since is not None,
        cost(pod),
        -siblings_on[node] if node else 0,
        -(since or _EPOCH).timestamp(),  # ready longer ranks later
        -restarts,
        -created.timestamp(),
    )


def removal_order(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the active pods, in the order the ReplicaSet removes them."""
    live = [p for p in pods if active(p)]
    siblings_on = Counter((p.get("spec") or {}).get("nodeName") or "" for p in live)
    ranked = sorted(live, key=lambda p: _rank(p, siblings_on))
    return [p["metadata"]["name"] for p in ranked]


def removed(pods: Sequence[Mapping[str, Any]], count: int) -> list[str]:
    """The pods a scale-down by ``count`` removes."""
    return removal_order(pods)[: max(count, 0)]
