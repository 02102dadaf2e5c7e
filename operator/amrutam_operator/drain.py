"""Drain Celery workers before their pods go: stop consuming, finish what they hold.

A worker's node name is ``celery@<pod name>`` (the chart sets it). The pods chosen to go
get the ReplicaSet's ``pod-deletion-cost`` annotation, so the scale-down removes exactly
them, and a remote-control ``cancel_consumer`` for every queue they consume. They are
idle when they report no active and no reserved task.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from celery import Celery

from amrutam_operator import kube

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
REPLY_TIMEOUT_S = 1.0


@lru_cache(maxsize=8)
def _control(broker_url: str) -> Any:
    return Celery("amrutam-operator", broker=broker_url).control


def node(pod: str) -> str:
    return f"celery@{pod}"


def choose(pods: list[Any], count: int) -> list[str]:
    """Pods to remove: not ready first, then the newest (as a ReplicaSet would)."""

    def ready(pod: Any) -> bool:
        conds = (pod.status.conditions if pod.status else None) or []
        return any(c.type == "Ready" and c.status == "True" for c in conds)

    ranked = sorted(
        pods,
        key=lambda p: (
            ready(p),
            -(p.metadata.creation_timestamp.timestamp() if p.metadata.creation_timestamp else 0),
        ),
    )
    return [p.metadata.name for p in ranked[:count]]


def _queues_of(control: Any, nodes: list[str]) -> dict[str, list[str]]:
    replies = control.inspect(destination=nodes, timeout=REPLY_TIMEOUT_S).active_queues() or {}
    return {n: [q["name"] for q in queues] for n, queues in replies.items()}


def _stop_consuming(broker_url: str, pods: list[str]) -> list[str]:
    control = _control(broker_url)
    queues = _queues_of(control, [node(p) for p in pods])
    for name, names in queues.items():
        for queue in names:
            control.cancel_consumer(queue, destination=[name], reply=True, timeout=REPLY_TIMEOUT_S)
    return sorted({q for names in queues.values() for q in names})


def _busy(broker_url: str, pods: list[str]) -> int:
    """Tasks the draining workers still hold (active or reserved). No reply: gone."""
    inspect = _control(broker_url).inspect(
        destination=[node(p) for p in pods], timeout=REPLY_TIMEOUT_S
    )
    held = 0
    for replies in (inspect.active() or {}, inspect.reserved() or {}):
        held += sum(len(tasks) for tasks in replies.values())
    return held


def _resume(broker_url: str, pods: list[str], queues: list[str]) -> None:
    control = _control(broker_url)
    for queue in queues:
        control.add_consumer(queue, destination=[node(p) for p in pods], reply=False)


async def start(namespace: str, broker_url: str, pods: list[str]) -> list[str]:
    for pod in pods:
        await kube.annotate_pod(namespace, pod, {DELETION_COST: "-1000"})
    return await asyncio.to_thread(_stop_consuming, broker_url, pods)


async def busy(broker_url: str, pods: list[str]) -> int:
    return await asyncio.to_thread(_busy, broker_url, pods)


async def cancel(namespace: str, broker_url: str, pods: list[str], queues: list[str]) -> None:
    await asyncio.to_thread(_resume, broker_url, pods, queues)
    for pod in pods:
        await kube.annotate_pod(namespace, pod, {DELETION_COST: None})
