"""The CRDs' CEL rules (``x-kubernetes-validations``) evaluated as the API server would
evaluate them on create and update, with a CEL library (no emulator runs them)."""

from __future__ import annotations

from typing import Any

import celpy

_ENV = celpy.Environment()


def _rules(schema: dict[str, Any], value: Any, old: Any, path: str) -> list[str]:
    failed = []
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is None:
            continue  # transition rules apply to updates only
        bindings = {"self": celpy.json_to_cel(value)}
        if transition:
            bindings["oldSelf"] = celpy.json_to_cel(old)
        result = _ENV.program(_ENV.compile(rule["rule"])).evaluate(bindings)
        if not (isinstance(result, celpy.celtypes.BoolType) and result):  # (or an error)
            failed.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, child in (schema.get("properties") or {}).items():
            if key in value:
                old_child = old.get(key) if isinstance(old, dict) else None
                failed += _rules(child, value[key], old_child, f"{path}.{key}")
    return failed


def violations(
    crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None
) -> list[str]:
    """Messages of the rules ``obj`` breaks (``old``: the object it updates)."""
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return _rules(schema, obj, old, "")
