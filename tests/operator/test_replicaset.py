"""The model of which pods a ReplicaSet removes (the controller's ranking), which the
drain relies on: a drained pod must be the one removed."""

from __future__ import annotations

from typing import Any

from amrutam_operator.replicaset import DELETION_COST, removal_order, removed


def pod(
    name: str,
    *,
    created: str = "2026-01-01T00:00:00Z",
    phase: str = "Running",
    ready: str | None = "2026-01-01T00:01:00Z",
    node: str | None = "node-a",
    cost: int | None = None,
    restarts: int = 0,
    terminating: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if cost is not None:
        meta["annotations"] = {DELETION_COST: str(cost)}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if ready:
        conditions[0]["lastTransitionTime"] = ready
    return {
        "metadata": meta,
        "spec": {"nodeName": node} if node else {},
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [{"restartCount": restarts}],
        },
    }


def test_terminating_failed_and_finished_pods_are_never_counted_or_chosen() -> None:
    pods = [
        pod("live-old"),
        pod("live-new", created="2026-01-01T05:00:00Z"),
        pod("terminating", created="2026-01-01T09:00:00Z", terminating=True),
        pod("evicted", created="2026-01-01T09:00:00Z", phase="Failed", ready=None),
        pod("done", phase="Succeeded", ready=None),
    ]
    assert removal_order(pods) == ["live-new", "live-old"]
    assert removed(pods, 1) == ["live-new"]


def test_unscheduled_then_pending_then_unready_rank_before_any_deletion_cost() -> None:
    pods = [
        pod("drained", cost=-1000),
        pod("unready", ready=None),
        pod("pending", phase="Pending", ready=None),
        pod("unscheduled", phase="Pending", ready=None, node=None),
    ]
    assert removal_order(pods) == ["unscheduled", "pending", "unready", "drained"]


def test_among_ready_pods_the_lowest_deletion_cost_goes_first() -> None:
    pods = [pod("newest", created="2026-01-03T00:00:00Z"), pod("cheap", cost=-1000)]
    assert removed(pods, 1) == ["cheap"]


def test_then_doubled_up_nodes_shorter_readiness_restarts_and_age() -> None:
    pods = [
        pod("alone", node="node-b", created="2026-01-05T00:00:00Z"),
        pod("shared-1", node="node-a"),
        pod("shared-2", node="node-a", ready="2026-01-01T03:00:00Z"),
    ]
    # node-a holds two: its pods go first, the one ready for less time before the other
    assert removal_order(pods) == ["shared-2", "shared-1", "alone"]
    same = [pod("calm"), pod("crashy", restarts=4), pod("young", created="2026-01-01T00:00:30Z")]
    assert removal_order(same) == ["crashy", "young", "calm"]
