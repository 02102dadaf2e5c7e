"""The chart rendered by the real Helm engine (Helm's Go library, without a binary)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "amrutam"


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    out = chart.render(values, name="amrutam", namespace="amrutam", is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in of_kind(docs, kind) if d["metadata"]["name"] == name)


def statefulset_pod(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The StatefulSet's pod: its template, with the claim its controller would bind."""
    sts = named(docs, "StatefulSet", name)
    pod = copy.deepcopy(sts["spec"]["template"]["spec"])
    if not any(v["name"] == "data" for v in pod["volumes"]):
        pod["volumes"].append(
            {"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}-0"}}
        )
    return pod
