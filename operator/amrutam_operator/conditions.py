"""Kubernetes-style status conditions (type, status, reason, message, lastTransitionTime)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(type_: str, ok: bool, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
    }


def merged(
    old: Iterable[Mapping[str, Any]] | None,
    new: Iterable[dict[str, Any]],
    generation: int | None,
) -> list[dict[str, Any]]:
    """The new conditions, keeping each one's transition time while its status holds,
    and the old conditions of types not reported this time."""
    before = {c["type"]: c for c in old or ()}
    stamp = now_iso()
    result = {}
    for cond in new:
        prior = before.get(cond["type"])
        same = prior is not None and prior.get("status") == cond["status"]
        result[cond["type"]] = {
            **cond,
            "observedGeneration": generation,
            "lastTransitionTime": prior["lastTransitionTime"] if same and prior else stamp,
        }
    for type_, kept in before.items():
        result.setdefault(type_, dict(kept))
    return list(result.values())


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions or ())
