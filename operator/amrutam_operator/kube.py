"""The few Kubernetes API calls the handlers make, through the official client.

The client is synchronous; every call runs in a thread so the operator's loop keeps
serving watches and other resources meanwhile. Every verb used here must be granted by
the chart's RBAC for the operator (a chart test checks that list against this module).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, AppsV1Api, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from amrutam_operator.config import settings

# (API group, resource, verb) for every call below; the chart's Role must grant these.
CALLS = {
    ("", "secrets", "get"),
    ("", "pods", "list"),
    ("", "pods", "patch"),
    ("apps", "deployments/scale", "get"),
    ("apps", "deployments/scale", "patch"),
    ("apps", "statefulsets/scale", "get"),
    ("apps", "statefulsets/scale", "patch"),
    ("apps", "deployments", "get"),
    ("apps", "statefulsets", "get"),
}


class MissingReference(Exception):
    """A referenced object (a secret, a target) is missing or unusable."""


@lru_cache
def client() -> ApiClient:
    url = settings().kube_api_url
    if url:
        return ApiClient(Configuration(host=url))
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    return ApiClient()


async def secret_value(namespace: str, ref: Mapping[str, Any]) -> str:
    name, key = ref["name"], ref.get("key", "url")
    try:
        read = CoreV1Api(client()).read_namespaced_secret
        secret = await asyncio.to_thread(read, name, namespace)
    except ApiException as exc:
        raise MissingReference(f"secret {name!r}: {exc.reason}") from exc
    data = (secret.data or {}).get(key)
    if data is None:
        raise MissingReference(f"secret {name!r} has no key {key!r}")
    return base64.b64decode(data).decode()


def _scale_calls(kind: str) -> tuple[Any, Any, Any]:
    apps = AppsV1Api(client())
    if kind == "Deployment":
        return (
            apps.read_namespaced_deployment_scale,
            apps.patch_namespaced_deployment_scale,
            apps.read_namespaced_deployment,
        )
    if kind == "StatefulSet":
        return (
            apps.read_namespaced_stateful_set_scale,
            apps.patch_namespaced_stateful_set_scale,
            apps.read_namespaced_stateful_set,
        )
    raise MissingReference(f"cannot scale a {kind}")


async def replicas(namespace: str, target: Mapping[str, Any]) -> int:
    read, _, _ = _scale_calls(target["kind"])
    try:
        scale = await asyncio.to_thread(read, target["name"], namespace)
    except ApiException as exc:
        raise MissingReference(f"{target['kind']} {target['name']!r}: {exc.reason}") from exc
    return int(scale.spec.replicas or 0)


async def scale(namespace: str, target: Mapping[str, Any], count: int) -> None:
    _, patch, _ = _scale_calls(target["kind"])
    await asyncio.to_thread(patch, target["name"], namespace, {"spec": {"replicas": count}})


async def target_pods(namespace: str, target: Mapping[str, Any]) -> list[Any]:
    """The pods the target's selector matches."""
    _, _, read = _scale_calls(target["kind"])
    workload = await asyncio.to_thread(read, target["name"], namespace)
    labels = (workload.spec.selector.match_labels or {}) if workload.spec.selector else {}
    if not labels:
        return []
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    pods = await asyncio.to_thread(
        CoreV1Api(client()).list_namespaced_pod, namespace, label_selector=selector
    )
    return list(pods.items)


async def annotate_pod(namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
    body = {"metadata": {"annotations": dict(annotations)}}
    await asyncio.to_thread(CoreV1Api(client()).patch_namespaced_pod, name, namespace, body)
