"""How many replicas a ScalingPolicy wants: the arithmetic, free of any I/O.

Like the HorizontalPodAutoscaler: replicas = ceil(value / target) within min/max; a
scale-up follows the lowest recommendation of its stabilisation window and a scale-down
the highest of its own (so a brief dip never removes workers), each by at most maxStep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """Recommendations seen, and when this operator started watching the target."""

    started: float
    seen: list[tuple[float, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    desired: int
    recommended: int
    limited: str | None  # why desired differs from the raw recommendation, if it does


def _ceil(x: float) -> int:
    # Rounded first: 3 * 0.1 / 0.05 is 6.000000000000001 in floating point, not 7 replicas.
    return math.ceil(round(x, 9))


def recommend(value: float, current: int, metric: Mapping[str, Any]) -> int:
    """Raw replica count for the metric value (before bounds, steps and windows)."""
    if "prometheus" in metric:
        prom = metric["prometheus"]
        target = float(prom["target"])
        if prom.get("metricType", "AverageValue") == "Value":
            return _ceil(max(current, 1) * value / target)
        return _ceil(value / target)
    return _ceil(value / float(metric["celeryQueue"]["targetPerReplica"]))


def decide(
    current: int, raw: int, spec: Mapping[str, Any], history: History, now: float
) -> Decision:
    low, high = int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])
    up, down = spec.get("scaleUp") or {}, spec.get("scaleDown") or {}
    up_window = float(up.get("stabilizationSeconds", 0))
    down_window = float(down.get("stabilizationSeconds", 300))

    bounded = min(max(raw, low), high)
    history.seen.append((now, bounded))
    keep = max(up_window, down_window)
    history.seen = [(t, r) for t, r in history.seen if now - t <= keep]

    up_to = min(r for t, r in history.seen if now - t <= up_window)
    down_to = max(r for t, r in history.seen if now - t <= down_window)
    if now - history.started < down_window:
        # No full window observed yet (a fresh operator): never scale down on a guess.
        down_to = max(down_to, current)

    desired, limited = current, None
    if up_to > current:
        desired = min(up_to, current + int(up.get("maxStep", 4)))
        limited = "ScaleUpStepLimited" if desired < up_to else None
    elif down_to < current:
        desired = max(down_to, current - int(down.get("maxStep", 1)))
        limited = "ScaleDownStepLimited" if desired > down_to else None
    desired = min(max(desired, low), high)
    if raw > high:
        limited = "TooManyReplicas"
    elif raw < low:
        limited = "TooFewReplicas"
    return Decision(desired=desired, recommended=bounded, limited=limited)
