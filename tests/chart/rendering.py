"""The chart rendered by the real Helm engine (Helm's Go library, without a binary)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from amrutam_operator import secrets as generator

CHART = Path(__file__).resolve().parents[2] / "charts" / "amrutam"


def render(values: dict[str, Any], *, installed: bool = True) -> list[dict[str, Any]]:
    """The chart's objects; ``installed`` adds the Secret its hook Job writes in a cluster."""
    chart = helm.Chart.load(CHART)
    out = chart.render(values, name="amrutam", namespace="amrutam", is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs + (generated_secrets(docs) if installed else [])


def secrets_job_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The environment the secrets Job's container gets (its env and given-values Secret)."""
    (container,) = named(docs, "Job", "amrutam-secrets")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for source in container["envFrom"]:
        given = named(docs, "Secret", source["secretRef"]["name"])
        env |= {k: base64.b64decode(v).decode() for k, v in (given.get("data") or {}).items()}
    return env


def generated_secrets(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the secrets Job writes on a first install: the same code, from its environment."""
    if not any(d["kind"] == "Job" and d["metadata"]["name"] == "amrutam-secrets" for d in docs):
        return []
    env = secrets_job_env(docs)
    plan = generator.Plan.model_validate(json.loads(env["AMRUTAM_SECRETS_PLAN"]))
    given = {k: env[k] for k in generator.GIVEN if env.get(k)}
    data = generator.env_secret(plan, given, {})
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": env["AMRUTAM_SECRETS_NAME"]},
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    ]


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
