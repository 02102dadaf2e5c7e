"""Drain Celery workers before their pods go: stop consuming, finish what they hold.

A worker's node name is ``celery@<pod name>`` (the chart sets it). The pods chosen are
the ones the ReplicaSet would remove (``replicaset``); each gets the ``pod-deletion-cost``
that keeps them first, and a remote-control ``cancel_consumer`` for every queue it
consumes. The drain's state lives on the pod, in the ``DRAINING`` annotation (the policy,
when it began, the queues to give back), so an operator restart finds it and goes on,
and a suspended or deleted policy gives the queues back. A running worker is idle when
it reports no active and no reserved task; one that does not answer counts as busy. A
task waiting for its ETA (a retry's countdown) does not hold a drain: the worker gives
it back to the queue when it stops (kombu restores unacknowledged messages at shutdown).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from celery import Celery

from amrutam_operator import kube, replicaset

DRAINING = "platform.amrutam.io/draining"
REPLY_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Drain:
    pod: str
    policy: str
    since: datetime
    queues: list[str]
    running: bool  # a Pending pod has no worker, so holds no task

    def age(self, now: datetime) -> float:
        return (now - self.since).total_seconds()


@lru_cache(maxsize=8)
def _control(broker_url: str) -> Any:
    return Celery("amrutam-operator", broker=broker_url).control


def node(pod: str) -> str:
    return f"celery@{pod}"


def draining(pods: Sequence[Mapping[str, Any]], policy: str | None = None) -> dict[str, Drain]:
    """The active pods being drained (by ``policy``, or by any when None)."""
    found = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        raw = (meta.get("annotations") or {}).get(DRAINING)
        if not raw or not replicaset.active(pod):
            continue
        try:
            state = json.loads(raw)
            drain = Drain(
                meta["name"],
                str(state["policy"]),
                datetime.fromisoformat(state["since"]),
                [str(q) for q in state["queues"]],
                (pod.get("status") or {}).get("phase") == "Running",
            )
        except (ValueError, KeyError, TypeError):
            continue
        if policy is None or drain.policy == policy:
            found[drain.pod] = drain
    return found


def _queues_of(control: Any, pods: list[str]) -> dict[str, list[str]]:
    nodes = [node(p) for p in pods]
    replies = control.inspect(destination=nodes, timeout=REPLY_TIMEOUT_S).active_queues() or {}
    return {n.split("@", 1)[1]: [q["name"] for q in queues] for n, queues in replies.items()}


def _stop_consuming(broker_url: str, queues: Mapping[str, list[str]]) -> None:
    control = _control(broker_url)
    for pod, names in queues.items():
        for queue in names:
            control.cancel_consumer(
                queue, destination=[node(pod)], reply=True, timeout=REPLY_TIMEOUT_S
            )


def _busy(broker_url: str, pods: list[str]) -> int:
    """Tasks the draining workers still hold (active or reserved); a worker that does
    not answer holds an unknown number, counted as one."""
    inspect = _control(broker_url).inspect(
        destination=[node(p) for p in pods], timeout=REPLY_TIMEOUT_S
    )
    active, reserved = inspect.active() or {}, inspect.reserved() or {}
    held = sum(len(tasks) for tasks in active.values()) + sum(
        len(tasks) for tasks in reserved.values()
    )
    silent = [p for p in pods if node(p) not in active or node(p) not in reserved]
    return held + len(silent)


def _resume(broker_url: str, drains: list[Drain]) -> None:
    control = _control(broker_url)
    for drain in drains:
        for queue in drain.queues:
            control.add_consumer(queue, destination=[node(drain.pod)], reply=False)


async def start(namespace: str, policy: str, broker_url: str, pods: list[str]) -> None:
    """Mark the pods (first: the state survives us), then stop their consumers."""
    queues = await asyncio.to_thread(_queues_of, _control(broker_url), pods)
    since = datetime.now(UTC).isoformat()
    for pod in pods:
        state = {"policy": policy, "since": since, "queues": queues.get(pod, [])}
        await kube.annotate_pod(
            namespace, pod, {replicaset.DELETION_COST: "-1000", DRAINING: json.dumps(state)}
        )
    await asyncio.to_thread(_stop_consuming, broker_url, queues)


async def busy(broker_url: str, drains: list[Drain]) -> int:
    running = [d.pod for d in drains if d.running]
    return await asyncio.to_thread(_busy, broker_url, running) if running else 0


async def cancel(namespace: str, broker_url: str | None, drains: list[Drain]) -> None:
    """Give the queues back and unmark the pods (a pod already gone needs neither)."""
    if broker_url:
        await asyncio.to_thread(_resume, broker_url, drains)
    for drain in drains:
        await kube.annotate_pod(
            namespace, drain.pod, {replicaset.DELETION_COST: None, DRAINING: None}
        )
