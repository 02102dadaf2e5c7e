"""Figures shared by the load tools (free of Locust, so tests can import them)."""

from __future__ import annotations

import math


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest value at or above ``pct`` % of them."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]
