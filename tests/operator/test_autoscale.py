"""The replica arithmetic of ScalingPolicy, on its own."""

from __future__ import annotations

from typing import Any

from amrutam_operator.autoscale import History, decide, recommend

SPEC: dict[str, Any] = {
    "minReplicas": 1,
    "maxReplicas": 10,
    "scaleUp": {"stabilizationSeconds": 0, "maxStep": 4},
    "scaleDown": {"stabilizationSeconds": 300, "maxStep": 1},
}
QUEUE = {"celeryQueue": {"targetPerReplica": 20}}


def test_recommendation_is_ceil_of_value_over_target() -> None:
    assert recommend(0, 3, QUEUE) == 0
    assert recommend(1, 3, QUEUE) == 1
    assert recommend(41, 3, QUEUE) == 3
    prom = {"prometheus": {"target": 0.05, "metricType": "Value"}}
    assert recommend(0.1, 3, prom) == 6  # twice the target: twice the replicas
    assert recommend(90, 3, {"prometheus": {"target": 30}}) == 3


def test_scale_up_is_limited_by_step_and_maximum() -> None:
    history = History(started=0)
    first = decide(1, 50, SPEC, history, now=1000)
    assert (first.desired, first.limited) == (5, "TooManyReplicas")
    assert decide(5, 50, SPEC, history, now=1015).desired == 9
    assert decide(9, 50, SPEC, history, now=1030).desired == 10


def test_scale_down_waits_for_the_window_and_steps_by_one() -> None:
    history = History(started=0)
    assert decide(6, 6, SPEC, history, now=1000).desired == 6
    # The load vanishes: the highest recommendation of the last 300 s still rules.
    assert decide(6, 0, SPEC, history, now=1100).desired == 6
    assert decide(6, 0, SPEC, history, now=1299).desired == 6
    later = decide(6, 0, SPEC, history, now=1301)
    assert (later.desired, later.limited) == (5, "TooFewReplicas")
    assert decide(5, 2, SPEC, history, now=1320).desired == 4


def test_a_fresh_operator_never_scales_down_before_a_full_window() -> None:
    history = History(started=1000)
    assert decide(8, 0, SPEC, history, now=1010).desired == 8
    assert decide(8, 0, SPEC, history, now=1301).desired == 7


def test_replicas_outside_the_bounds_come_back_inside() -> None:
    assert decide(0, 0, SPEC, History(started=0), now=1000).desired == 1
    assert decide(15, 20, SPEC, History(started=0), now=1000).desired == 10


def test_a_brief_spike_inside_the_up_window_is_ignored() -> None:
    spec = {**SPEC, "scaleUp": {"stabilizationSeconds": 60, "maxStep": 4}}
    history = History(started=0)
    decide(2, 2, spec, history, now=1000)
    assert decide(2, 9, spec, history, now=1010).desired == 2  # min over the window is 2
    assert decide(2, 9, spec, history, now=1061).desired == 6  # sustained: up by maxStep
