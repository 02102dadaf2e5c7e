"""Kubernetes-style status conditions (type, status, reason, message, lastTransitionTime)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import kopf

from amrutam_operator import metrics
from amrutam_operator.config import backoff


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(type_: str, ok: bool, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
    }


def unknown(type_: str, reason: str, message: str = "") -> dict[str, Any]:
    """A condition that could not be evaluated this time: never an old True."""
    return {"type": type_, "status": "Unknown", "reason": reason, "message": message}


def summary(parts: Iterable[Mapping[str, Any]], ok_reason: str, ok_message: str) -> dict[str, Any]:
    """``Ready`` over other conditions: False if any is False (with its reason), else
    Unknown if any is Unknown, else True."""
    parts = list(parts)
    for status in ("False", "Unknown"):
        for part in parts:
            if part["status"] == status:
                message = f"{part['type']}: {part['message']}"
                found = condition("Ready", False, part["reason"], message)
                found["status"] = status
                return found
    return condition("Ready", True, ok_reason, ok_message)


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


def warn_once(
    memo: kopf.Memo, key: str, failing: bool, body: kopf.Body, reason: str, message: str
) -> None:
    """One Warning Event per spell of a failure. Remembered in the resource's memo, not
    read back from the status, which reaches a handler only when the watch delivers it."""
    if failing and not memo.get(key):
        kopf.warn(body, reason=reason, message=message)
    memo[key] = failing


def fail(
    patch: kopf.Patch,
    status: kopf.Status,
    body: kopf.Body,
    memo: kopf.Memo,
    *,
    kind: str,
    reason: str,
    exc: Exception,
    generation: int | None,
    retry: int,
    report: Callable[[Mapping[str, Any]], None] | None = None,
) -> NoReturn:
    """The one failure path of a reconcile: ``Ready=False`` with the reason, every other
    condition ``Unknown`` with it (not evaluated this time: never an old True, N15), one
    Warning per spell of failure, the failure metric, and a retry after our backoff.
    ``report`` sees each condition written (the condition gauges)."""
    message = f"{type(exc).__name__}: {exc}"
    patch.status["observedGeneration"] = generation
    old = status.get("conditions") or ()
    written = [
        *(unknown(c["type"], reason, "not evaluated: " + message) for c in old
          if c.get("type") != "Ready"),
        condition("Ready", False, reason, message),
    ]  # fmt: skip
    patch.status["conditions"] = merged(old, written, generation)
    if report is not None:
        for cond in written:
            report(cond)
    warn_once(memo, "not_ready", True, body, reason, message)
    metrics.failed(kind)
    raise kopf.TemporaryError(message, delay=backoff(retry)) from exc


def recovered(memo: kopf.Memo) -> None:
    """The reconcile succeeded: the next failure starts a new spell (and warns again)."""
    memo["not_ready"] = False
