"""The real operator (kopf, in process) against kmock's Kubernetes emulator.

One emulator and one operator serve the whole package; each test makes its own
resources. The emulator stores what it is sent and streams watch events, but applies no
CRD defaults or validation, sets no resourceVersion and bumps no generation: the helpers
here do those parts of an API server's job (schemas are tested on their own).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import pytest_asyncio
import yaml
from amrutam_operator import metrics
from kopf.testing import KopfRunner

from tests.helpers import KUBE_PORT, LIVENESS_PORT

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "charts" / "amrutam" / "crds"
GROUP = "platform.amrutam.io/v1alpha1"
NAMESPACE = "default"
pytestmark = pytest.mark.asyncio(loop_scope="package")


def crds() -> list[dict[str, Any]]:
    """The platform's own CRDs (the chart also ships kopf's peering CRD)."""
    found = [yaml.safe_load(path.read_text()) for path in sorted(CRDS.glob("*.yaml"))]
    return [crd for crd in found if crd["spec"]["group"] == "platform.amrutam.io"]


class Cluster:
    """The emulator, with kubectl-like helpers."""

    def __init__(self, emulator: kmock.KubernetesEmulator, url: str) -> None:
        self.emulator, self.url = emulator, url
        self._generation: dict[tuple[str, str], int] = {}

    def _path(self, api: str, plural: str, name: str = "") -> str:
        prefix = f"/api/{api}" if api == "v1" else f"/apis/{api}"
        return f"{self.url}{prefix}/namespaces/{NAMESPACE}/{plural}" + (f"/{name}" if name else "")

    async def _send(self, method: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, url, json=body, headers={"Content-Type": "application/merge-patch+json"}
            ) as response,
        ):
            data: dict[str, Any] = await response.json()
            assert response.status < 300, data
            return data

    async def create(self, api: str, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self._generation[(plural, name)] = 1
        body["metadata"].update(
            namespace=NAMESPACE,
            generation=1,
            resourceVersion="1",
            uid=f"uid-{plural}-{name}",
            creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        return await self._send("POST", self._path(api, plural), body)

    async def apply(self, plural: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a custom resource, or change its spec (and generation) like kubectl."""
        if (plural, name) not in self._generation:
            body = {"apiVersion": GROUP, "kind": kind(plural), "metadata": {"name": name}}
            return await self.create(GROUP, plural, {**body, "spec": spec})
        self._generation[(plural, name)] += 1
        patch = {"metadata": {"generation": self._generation[(plural, name)]}, "spec": spec}
        return await self._send("PATCH", self._path(GROUP, plural, name), patch)

    async def patch(self, api: str, plural: str, name: str, body: dict[str, Any]) -> None:
        await self._send("PATCH", self._path(api, plural, name), body)

    async def delete(self, plural: str, name: str, api: str = GROUP) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.delete(self._path(api, plural, name)) as response,
        ):
            assert response.status < 300

    def gone(self, plural: str, name: str) -> bool:
        """Whether a deleted custom resource has gone: the operator has let it go (its
        finalizer removed once its timer and deletion handlers finished)."""
        return bool(self.emulator.objects[f"{GROUP}/{plural}", NAMESPACE, name].deleted)

    async def forget_custom_resources(self) -> None:
        """Delete every custom resource applied so far: the operator is shared by the whole
        package, and a module's leftovers (schedules polling dead repositories every half
        second) would otherwise compete with the next module's timers for two cores."""
        custom = {c["spec"]["names"]["plural"] for c in crds()}
        for plural, name in [key for key in self._generation if key[0] in custom]:
            with contextlib.suppress(AssertionError, aiohttp.ClientError):
                await self.delete(plural, name)
            del self._generation[plural, name]

    @staticmethod
    def now() -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def get(self, api: str, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.emulator.objects[api + "/" + plural, NAMESPACE, name].raw
        return obj

    def resource(self, plural: str, name: str) -> dict[str, Any]:
        return self.get(GROUP, plural, name)

    def replicas(self, deployment: str) -> int:
        return int(self.get("apps/v1", "deployments", deployment)["spec"]["replicas"])

    async def secret(self, name: str, **data: str) -> None:
        """Create a secret, or set its data when it exists (tests may share one)."""
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        with contextlib.suppress(KeyError):
            if not self.emulator.objects["v1/secrets", NAMESPACE, name].deleted:
                await self.patch("v1", "secrets", name, {"data": encoded})
                return
        await self.create("v1", "secrets", {"metadata": {"name": name}, "data": encoded})

    def events(self, about: str) -> list[dict[str, Any]]:
        """Events the operator posted about an object (each POST, kept or not)."""
        found = []
        for request in list(self.emulator):
            if request.method == kmock.method.POST and request.url.path.endswith("/events"):
                data = request.data or {}
                if data.get("involvedObject", {}).get("name") == about:
                    found.append(data)
        return found


def kind(plural: str) -> str:
    """The kind the CRDs give a plural (read from the CRDs, not repeated here)."""
    kinds = {c["spec"]["names"]["plural"]: c["spec"]["names"]["kind"] for c in crds()}
    return kinds[plural]


def series(kind: str, name: str) -> list[str]:
    """The metric series the operator holds for a resource of that kind and name."""
    return [
        sample.name
        for gauge in (metrics.LAST_SUCCESS, *metrics.BACKUP_SERIES)
        for family in gauge.collect()
        for sample in family.samples
        if sample.labels["name"] == name and sample.labels.get("kind", kind) == kind
    ]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == type_:
            return dict(cond)
    return None


async def eventually(check: Callable[[], Any], timeout: float = 30, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if inspect.isawaitable(last):
                last = await last
            if last:
                return last
        except (KeyError, AssertionError, TypeError) as exc:
            last = exc
        await asyncio.sleep(every)
    raise AssertionError(f"not reached in {timeout}s; last: {last!r}")


async def _answers() -> bool:
    try:
        url = f"http://127.0.0.1:{LIVENESS_PORT}/healthz"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False


def _register(emulator: kmock.KubernetesEmulator) -> None:
    verbs = {"get", "list", "watch", "create", "patch", "update", "delete"}
    for crd in crds():
        names = crd["spec"]["names"]
        emulator.resources[f"{crd['spec']['group']}/v1alpha1/{names['plural']}"] = (
            kmock.ResourceInfo(
                kind=names["kind"],
                namespaced=True,
                verbs=verbs,
                shortnames=set(names.get("shortNames", [])),
                subresources={"status"},
            )
        )
    for key, kind_, subresources in [
        ("v1/namespaces", "Namespace", set()),
        ("v1/events", "Event", set()),
        ("v1/secrets", "Secret", set()),
        ("v1/configmaps", "ConfigMap", set()),
        ("v1/pods", "Pod", set()),
        ("apps/v1/deployments", "Deployment", {"scale", "status"}),
        ("autoscaling/v2/horizontalpodautoscalers", "HorizontalPodAutoscaler", set()),
        ("batch/v1/cronjobs", "CronJob", set()),
        ("batch/v1/jobs", "Job", {"status"}),
        ("v1/persistentvolumeclaims", "PersistentVolumeClaim", set()),
        ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", set()),
    ]:
        emulator.resources[key] = kmock.ResourceInfo(
            kind=kind_,
            namespaced=key != "v1/namespaces" and "apiextensions" not in key,
            verbs=verbs,
            subresources=subresources,
        )
    emulator.objects["v1/namespaces", None, NAMESPACE] = {"metadata": {"name": NAMESPACE}}
    # The CRDs themselves, as `helm install` leaves them (the operator checks their revision).
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        key = ("apiextensions.k8s.io/v1/customresourcedefinitions", None, crd["metadata"]["name"])
        emulator.objects[key] = crd


_RUNNING: list[Cluster] = []  # the package's cluster, once a test has asked for it


@pytest_asyncio.fixture(scope="module", loop_scope="package", autouse=True)
async def _one_module_at_a_time() -> AsyncIterator[None]:
    yield
    for cluster in _RUNNING:
        await cluster.forget_custom_resources()


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def cluster() -> AsyncIterator[Cluster]:
    async with (
        kmock.KubernetesEmulator() as emulator,
        kmock.Server(emulator, port=KUBE_PORT) as server,
    ):
        _register(emulator)
        url = str(server.url).rstrip("/")
        # In a thread with its own loop, as `kopf run` would be; this loop serves the API.
        # Cluster-wide: kmock 0.8 cannot parse the namespace listing a namespaced kopf makes.
        runner = KopfRunner(
            [
                "run",
                "-m",
                "amrutam_operator",
                "--all-namespaces",
                "--standalone",
                f"--liveness=http://127.0.0.1:{LIVENESS_PORT}/healthz",
            ],
            timeout=60,
        )
        await asyncio.to_thread(runner.__enter__)
        # The runner returns before the start-up handlers (the CRD check among them) have
        # run; kopf opens its liveness port only after them.
        await eventually(_answers, timeout=60)
        _RUNNING.append(Cluster(emulator, url))
        yield _RUNNING[0]
        _RUNNING.clear()
        await asyncio.to_thread(runner.__exit__, None, None, None)
