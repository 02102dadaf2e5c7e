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
from typing import Any, cast

import kubernetes
from kubernetes.client import (
    ApiClient,
    ApiextensionsV1Api,
    AppsV1Api,
    AutoscalingV2Api,
    BatchV1Api,
    Configuration,
    CoreV1Api,
    CustomObjectsApi,
)
from kubernetes.client.exceptions import ApiException

from amrutam_operator.config import GROUP, VERSION, settings

# (API group, resource, verb) for every call below; the chart's Role must grant these.
CALLS = {
    ("", "secrets", "get"),
    ("", "pods", "list"),
    ("", "pods", "patch"),
    ("autoscaling", "horizontalpodautoscalers", "list"),
    ("platform.amrutam.io", "scalingpolicies", "list"),
    # The chart's pre-delete hook (uninstall.py), with the operator's account.
    ("platform.amrutam.io", "auditpartitionpolicies", "list"),
    ("platform.amrutam.io", "backupschedules", "list"),
    ("platform.amrutam.io", "pointintimerestores", "list"),
    ("platform.amrutam.io", "auditpartitionpolicies", "delete"),
    ("platform.amrutam.io", "scalingpolicies", "delete"),
    ("platform.amrutam.io", "backupschedules", "delete"),
    ("platform.amrutam.io", "pointintimerestores", "delete"),
    # The schema revision of our CRDs, checked at start-up (crds.py).
    ("apiextensions.k8s.io", "customresourcedefinitions", "get"),
    # The liveness heartbeat (liveness.py) on kopf's peering object.
    ("kopf.dev", "kopfpeerings", "patch"),
    ("apps", "deployments/scale", "get"),
    ("apps", "deployments/scale", "patch"),
    ("apps", "statefulsets/scale", "get"),
    ("apps", "statefulsets/scale", "patch"),
    ("apps", "deployments", "get"),
    ("apps", "statefulsets", "get"),
    ("", "configmaps", "get"),
    ("", "persistentvolumeclaims", "get"),
    ("", "persistentvolumeclaims", "create"),
    ("batch", "cronjobs", "list"),
    ("batch", "cronjobs", "create"),
    ("batch", "cronjobs", "patch"),
    ("batch", "cronjobs", "delete"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "create"),
    ("batch", "jobs", "delete"),
    ("platform.amrutam.io", "backupschedules", "get"),
    # Objects created with kopf.adopt carry ownerReferences with blockOwnerDeletion, which
    # clusters enforcing owner permissions (OpenShift) allow only with update on the
    # owner's finalizers: CronJobs and Jobs of a BackupSchedule, a restore's Job.
    ("platform.amrutam.io", "backupschedules/finalizers", "update"),
    ("platform.amrutam.io", "pointintimerestores/finalizers", "update"),
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
    value = (await secret_data(namespace, name)).get(key)
    if value is None:
        raise MissingReference(f"secret {name!r} has no key {key!r}")
    return value


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


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A workload's label selector (matchLabels and matchExpressions) against labels."""
    if not selector:
        return False  # an empty selector would mean every pod: never act on that
    if not dict(selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in (values or [])):
            return False
        if operator == "NotIn" and present and labels[key] in (values or []):
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


async def target_pods(namespace: str, target: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pods the target's selector matches (all of them, terminating ones included)."""
    _, _, read = _scale_calls(target["kind"])
    try:
        workload = _plain(await asyncio.to_thread(read, target["name"], namespace))
    except ApiException as exc:
        if exc.status != 404:
            raise
        raise MissingReference(f"{target['kind']} {target['name']!r}: {exc.reason}") from exc
    selector = (workload.get("spec") or {}).get("selector") or {}
    labels = selector.get("matchLabels") or {}
    pods = await asyncio.to_thread(
        CoreV1Api(client()).list_namespaced_pod,
        namespace,
        label_selector=_selector(labels) if labels else None,
    )
    plain = [_plain(pod) for pod in pods.items]
    return [p for p in plain if matches(selector, (p.get("metadata") or {}).get("labels") or {})]


async def autoscalers(namespace: str) -> list[dict[str, Any]]:
    """The namespace's HorizontalPodAutoscalers."""
    found = await asyncio.to_thread(
        AutoscalingV2Api(client()).list_namespaced_horizontal_pod_autoscaler, namespace
    )
    return [_plain(item) for item in found.items]


async def custom_objects(namespace: str, plural: str) -> list[dict[str, Any]]:
    found = await asyncio.to_thread(
        CustomObjectsApi(client()).list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        plural,
    )
    return list(cast(dict[str, Any], found).get("items", []))


async def scaling_policies(namespace: str) -> list[dict[str, Any]]:
    return await custom_objects(namespace, "scalingpolicies")


async def delete_custom_object(namespace: str, plural: str, name: str) -> None:
    """Delete (a finalizer may keep it a while); one already gone needs nothing."""
    try:
        await asyncio.to_thread(
            CustomObjectsApi(client()).delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


async def annotate_pod(namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
    """Set (or, with None, remove) annotations; a pod already gone needs none."""
    body = {"metadata": {"annotations": dict(annotations)}}
    try:
        await asyncio.to_thread(CoreV1Api(client()).patch_namespaced_pod, name, namespace, body)
    except ApiException as exc:
        if exc.status != 404:
            raise


async def configmap_data(namespace: str, name: str) -> dict[str, str]:
    try:
        found = await asyncio.to_thread(
            CoreV1Api(client()).read_namespaced_config_map, name, namespace
        )
    except ApiException as exc:
        raise MissingReference(f"configmap {name!r}: {exc.reason}") from exc
    return dict(found.data or {})


async def secret_data(namespace: str, name: str) -> dict[str, str]:
    try:
        found = await asyncio.to_thread(CoreV1Api(client()).read_namespaced_secret, name, namespace)
    except ApiException as exc:
        raise MissingReference(f"secret {name!r}: {exc.reason}") from exc
    return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}


def _plain(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = client().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return data


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _labelled(items: list[Any], labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The items carrying every label (checked here too: never act on a stranger)."""
    plain = [_plain(item) for item in items]
    return [
        item
        for item in plain
        if labels.items() <= (item.get("metadata", {}).get("labels") or {}).items()
    ]


async def cronjobs(namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    found = await asyncio.to_thread(
        BatchV1Api(client()).list_namespaced_cron_job, namespace, label_selector=_selector(labels)
    )
    return _labelled(found.items, labels)


async def jobs(namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    found = await asyncio.to_thread(
        BatchV1Api(client()).list_namespaced_job, namespace, label_selector=_selector(labels)
    )
    return _labelled(found.items, labels)


async def create_cronjob(namespace: str, body: Any) -> None:
    await asyncio.to_thread(BatchV1Api(client()).create_namespaced_cron_job, namespace, body)


async def patch_cronjob(namespace: str, name: str, body: Any) -> None:
    await asyncio.to_thread(BatchV1Api(client()).patch_namespaced_cron_job, name, namespace, body)


async def delete_cronjob(namespace: str, name: str) -> None:
    await asyncio.to_thread(BatchV1Api(client()).delete_namespaced_cron_job, name, namespace)


async def create_job(namespace: str, body: Any) -> bool:
    """Create a Job; False when one of that name exists already (idempotent retries)."""
    try:
        await asyncio.to_thread(BatchV1Api(client()).create_namespaced_job, namespace, body)
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


async def job(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found = await asyncio.to_thread(BatchV1Api(client()).read_namespaced_job, name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return _plain(found)


async def pvc(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found = await asyncio.to_thread(
            CoreV1Api(client()).read_namespaced_persistent_volume_claim, name, namespace
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return _plain(found)


async def create_pvc(namespace: str, body: Any) -> None:
    await asyncio.to_thread(
        CoreV1Api(client()).create_namespaced_persistent_volume_claim, namespace, body
    )


async def pods(namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    found = await asyncio.to_thread(
        CoreV1Api(client()).list_namespaced_pod, namespace, label_selector=_selector(labels)
    )
    return _labelled(found.items, labels)


async def job_pods(namespace: str, job_name: str) -> list[dict[str, Any]]:
    """The pods the Job controller made for a Job (it labels them with the Job's name)."""
    return await pods(namespace, {"job-name": job_name})


async def delete_job(namespace: str, name: str) -> None:
    """Delete a Job and, in the background, its pods (and their ephemeral volumes)."""
    try:
        await asyncio.to_thread(
            BatchV1Api(client()).delete_namespaced_job,
            name,
            namespace,
            propagation_policy="Background",
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


def termination_messages(pods: list[dict[str, Any]]) -> dict[str, str]:
    """Each terminated container's message (the Jobs report results this way)."""
    found = {}
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated")
            if terminated and terminated.get("message"):
                found[container["name"]] = terminated["message"]
    return found


async def custom_object(namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    api = CustomObjectsApi(client())
    try:
        found = await asyncio.to_thread(
            api.get_namespaced_custom_object,
            "platform.amrutam.io",
            "v1alpha1",
            namespace,
            plural,
            name,
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return cast(dict[str, Any], found)  # the client returns the parsed JSON


async def annotate_peering(
    plural: str, namespace: str | None, name: str, annotations: Mapping[str, str]
) -> dict[str, Any]:
    """Annotate kopf's peering object (the liveness heartbeat); returns the object."""
    api = CustomObjectsApi(client())
    body = {"metadata": {"annotations": dict(annotations)}}
    call: Any = api.patch_cluster_custom_object
    args: tuple[Any, ...] = ("kopf.dev", "v1", plural, name, body)
    if namespace is not None:
        call = api.patch_namespaced_custom_object
        args = ("kopf.dev", "v1", namespace, plural, name, body)
    return cast(dict[str, Any], await asyncio.to_thread(call, *args))


async def crd(name: str) -> dict[str, Any] | None:
    """A CustomResourceDefinition, or None when the cluster has none by that name."""
    api = ApiextensionsV1Api(client())
    try:
        found = await asyncio.to_thread(api.read_custom_resource_definition, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return _plain(found)
