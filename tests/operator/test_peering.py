"""Two operator replicas: only one acts, the other takes over; liveness sees stalled watches.

Two real operator processes (`kopf run`, as the chart's pods run it, each with its own
pod name and so its own peering priority) against one emulated API of their own.
Cluster-wide, as kmock cannot serve the namespace listing a namespaced kopf makes: kopf
then peers in a ClusterKopfPeering instead of the chart's KopfPeering, by the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import kmock
import pytest

from amrutam.dev.servers import free_port
from tests.operator.conftest import ROOT, Cluster, _register, eventually
from tests.operator.test_scaling import deployment

PEERING = "amrutam"


class Operator:
    """One `kopf run` process with its pod name, log and liveness endpoint."""

    def __init__(self, name: str, api: str, log: Path) -> None:
        self.name, self.api, self.log = name, api, log
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = dict(
            os.environ,
            AMRUTAM_OPERATOR_KUBE_API_URL=self.api,
            AMRUTAM_OPERATOR_STANDALONE="false",
            AMRUTAM_OPERATOR_PEERING_NAME=PEERING,
            AMRUTAM_OPERATOR_POD_NAME=self.name,
            AMRUTAM_OPERATOR_HEARTBEAT_S="0.5",
            AMRUTAM_OPERATOR_WATCH_TIMEOUT_S="2",
            AMRUTAM_OPERATOR_METRICS_PORT="0",
        )
        env.pop("AMRUTAM_OPERATOR_PRIORITY", None)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kopf", "run", "-m", "amrutam_operator", "--all-namespaces",
            f"--liveness={self.liveness}",
            cwd=ROOT, env=env, stdout=self.log.open("wb"), stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def said(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")

    async def health(self) -> tuple[int, str]:
        try:
            async with aiohttp.ClientSession() as session, session.get(self.liveness) as response:
                return response.status, await response.text()
        except aiohttp.ClientConnectionError as exc:  # not listening yet
            return 0, repr(exc)

    async def reports(self, state: str) -> bool:
        """Alive, and leading ("active") or paused by a peer ("standby")."""
        status, body = await self.health()
        return status == 200 and f'"watching": "{state}"' in body


@contextlib.asynccontextmanager
async def emulated_api() -> AsyncIterator[Cluster]:
    port = free_port()
    async with (
        kmock.KubernetesEmulator() as emulator,
        kmock.Server(emulator, port=port) as server,
    ):
        _register(emulator)
        emulator.resources["kopf.dev/v1/clusterkopfpeerings"] = kmock.ResourceInfo(
            kind="ClusterKopfPeering",
            namespaced=False,
            verbs={"get", "list", "watch", "patch", "create"},
        )
        emulator.objects["kopf.dev/v1/clusterkopfpeerings", None, PEERING] = {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": PEERING},
        }
        yield Cluster(emulator, str(server.url).rstrip("/"))


def paused_policy(target: str) -> dict[str, object]:
    return {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 1,
        "maxReplicas": 5,
        "paused": {"replicas": 3},
        "metric": {
            "celeryQueue": {
                "redisSecretRef": {"name": "redis", "key": "url"},
                "queues": ["default"],
                "targetPerReplica": 10,
            }
        },
        "pollInterval": 1,
    }


@pytest.mark.asyncio(loop_scope="function")
async def test_two_operator_replicas_one_acts_and_the_other_takes_over(tmp_path: Path) -> None:
    async with emulated_api() as cluster:
        await cluster.secret("redis", url="redis://127.0.0.1:1/0")
        # The copy started first leads, and one started later never takes over (N12).
        names = ["operator-a", "operator-b"]
        leader, standby = (Operator(name, cluster.url, tmp_path / f"{name}.log") for name in names)
        try:
            await leader.start()
            await eventually(lambda: leader.reports("active"), 60)
            await standby.start()
            await eventually(lambda: standby.reports("standby"), 60)

            # Only the leader acts; the standby, paused on purpose, is alive.
            await deployment(cluster, "first", 1)
            await cluster.apply("scalingpolicies", "first", paused_policy("first"))
            await eventually(lambda: cluster.replicas("first") == 3)
            await asyncio.sleep(2)  # time for a wrongly active standby to have acted
            assert leader.said("default/first")
            assert not standby.said("default/first")
            assert await leader.reports("active")
            assert await standby.reports("standby")

            # The leader stops: it leaves the peering, and the standby resumes and acts.
            await leader.stop()
            await eventually(lambda: standby.said("Resuming operations"), 60)
            await deployment(cluster, "second", 1)
            await cluster.apply("scalingpolicies", "second", paused_policy("second"))
            await eventually(lambda: cluster.replicas("second") == 3)
            await eventually(lambda: standby.said("default/second"))  # (logged after it acts)
        finally:
            await leader.stop()
            await standby.stop()


@pytest.mark.asyncio(loop_scope="function")
async def test_liveness_fails_when_the_watch_streams_stall(tmp_path: Path) -> None:
    async with emulated_api() as cluster:
        operator = Operator("operator-a", cluster.url, tmp_path / "operator.log")
        try:
            await operator.start()

            await eventually(lambda: operator.reports("active"), 60)
            # From now on every watch the API accepts sends nothing, like a half-open
            # connection; the API still answers other calls (the heartbeat is taken).
            cluster.emulator[kmock.action.WATCH] << (lambda: asyncio.sleep(3600),)

            async def failing() -> bool:
                return (await operator.health())[0] == 500

            await eventually(failing, 60)
            assert operator.said("the watch streams have delivered nothing")
        finally:
            await operator.stop()
