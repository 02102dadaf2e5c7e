"""Running a pod's containers on this machine, as a kubelet would, to test what runs.

No cluster can run here, so the operator's Jobs (and the chart's pgBackRest servers) are
run from their manifests: the exact argv and environment of each container, every
volume a folder (configMaps and secrets written out, a claim a folder the test names,
an emptyDir a fresh folder), and each ``mountPath`` in arguments, environment and
mounted files replaced by its folder. Init containers run in order, then the
containers together; a container's termination message is read back from its
``terminationMessagePath`` as the kubelet reports it. Processes run as the ``postgres``
OS user, the unprivileged user that stands for the pods' user ids (pgBackRest and
PostgreSQL behave as they do in the pods: a root-owned key readable by the group is
accepted, nothing looser). The one exception is the project's own command (``amrutam``):
its interpreter lives in the test user's home, so it runs as that user.

What differs from a cluster is only what cannot be reproduced on one host: service
names and ports (``rewrite`` maps them, as cluster DNS would) and the images' PATH
(PostgreSQL's binaries and the project's virtualenv stand for the two images). Paths a
program finds by default are not rewritten: the remote a pgBackRest TLS server starts
reads ``/etc/pgbackrest/pgbackrest.conf``, which in the pod is the database's ConfigMap
and here is the host's. ``make image-test`` (``tests/images``) runs the same pods in the
built images, where such paths are the pod's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amrutam.dev.servers import pg_bindir
from amrutam.infra.system import as_postgres_user, chown_to_postgres

TERMINATION_LOG = "/dev/termination-log"


@dataclass
class Finished:
    name: str
    code: int
    message: str  # the termination message, as the pod's status carries it
    output: str
    image: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0

    def as_status(self) -> dict[str, Any]:
        """This container's entry in a pod's ``status.containerStatuses``."""
        return {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": {
                "terminated": {
                    "exitCode": self.code,
                    "reason": "Completed" if self.ok else "Error",
                    "message": self.message,
                }
            },
        }


@dataclass
class Sources:
    """What the cluster would hold: ConfigMaps and Secrets by name, claims as folders."""

    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    claims: dict[str, Path] = field(default_factory=dict)
    # (configmap name, text) -> text: service names and ports, as cluster DNS maps them
    rewrite: Callable[[str, str], str] = lambda _name, text: text
    # Folders of this machine that every pod sees as they are (a posix repository standing
    # for remote storage): never taken for a mount path such as /tmp.
    host_paths: tuple[str, ...] = ()


def _own(path: Path) -> None:
    chown_to_postgres(path)
    for inner in path.rglob("*"):
        chown_to_postgres(inner)


class Pod:
    def __init__(self, spec: Mapping[str, Any], root: Path, sources: Sources) -> None:
        self.spec, self.root, self.sources = spec, root, sources
        root.mkdir(parents=True, exist_ok=True)
        self.volumes = {v["name"]: self._volume(v) for v in spec.get("volumes", [])}
        self._files = [v for v in spec.get("volumes", []) if "configMap" in v or "secret" in v]
        for volume in self._files:  # mounted files see the pod's paths, then the services
            source = (volume.get("configMap") or {}).get("name", "")
            for path in self.volumes[volume["name"]].iterdir():
                text = self.local_everywhere(path.read_text())
                path.write_text(self.sources.rewrite(source, text) if source else text)
        _own(root)
        for volume in self._files:
            self._as_kubelet_writes(volume)

    def _as_kubelet_writes(self, volume: Mapping[str, Any]) -> None:
        """Secret and configMap files belong to root, in the pod's fsGroup, with the
        volume's mode plus group read when there is an fsGroup (as the kubelet sets them;
        pgBackRest accepts a root-owned key readable by its group, nothing looser)."""
        source = volume.get("secret") or volume.get("configMap") or {}
        mode = int(source.get("defaultMode", 0o644))
        if (self.spec.get("securityContext") or {}).get("fsGroup") is not None:
            mode |= 0o440
        for path in self.volumes[volume["name"]].iterdir():
            if os.geteuid() == 0:
                shutil.chown(path, "root", "postgres")
            path.chmod(mode)

    def _volume(self, volume: Mapping[str, Any]) -> Path:
        name = volume["name"]
        if "persistentVolumeClaim" in volume:
            path = self.sources.claims[volume["persistentVolumeClaim"]["claimName"]]
            path.mkdir(parents=True, exist_ok=True)
            _own(path)
            return path
        path = self.root / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            source = volume["configMap"]["name"]
            for key, text in self.sources.configmaps[source].items():
                (path / key).write_text(text)
        elif "secret" in volume:
            for key, text in self.sources.secrets[volume["secret"]["secretName"]].items():
                (path / key).write_text(text)
        elif "emptyDir" not in volume and "ephemeral" not in volume:
            raise NotImplementedError(f"volume {name}: {sorted(volume)}")
        return path

    def containers(self, init: bool = False) -> list[dict[str, Any]]:
        return list(self.spec.get("initContainers" if init else "containers", []))

    def container(self, name: str) -> dict[str, Any]:
        return next(c for c in self.containers(True) + self.containers() if c["name"] == name)

    def _mounts(self, container: Mapping[str, Any]) -> list[tuple[str, Path]]:
        pairs = [
            (
                m["mountPath"],
                self.volumes[m["name"]] / m["subPath"]
                if m.get("subPath")
                else self.volumes[m["name"]],
            )
            for m in container.get("volumeMounts", [])
        ]
        path = container.get("terminationMessagePath", TERMINATION_LOG)
        pairs.append((path, self.root / f"{container['name']}.termination-log"))
        return sorted(pairs, key=lambda pair: -len(pair[0]))

    def _replace(self, text: str, pairs: list[tuple[str, Path]]) -> str:
        """One pass, longest mount path first (a replaced path is never replaced again)."""
        if not pairs:
            return text
        local = dict(pairs)
        alternatives = "|".join(re.escape(mount) for mount, _ in pairs)
        kept = "".join(f"(?!{re.escape(path)})" for path in self.sources.host_paths)
        pattern = rf"(?<![\w./-]){kept}({alternatives})(?=/|$|[^\w.-])"
        return re.sub(pattern, lambda m: str(local[m.group(1)]), text)

    def local(self, container: Mapping[str, Any], text: str) -> str:
        return self._replace(text, self._mounts(container))

    def local_everywhere(self, text: str) -> str:
        pairs = [p for c in self.containers(True) + self.containers() for p in self._mounts(c)]
        return self._replace(text, sorted(set(pairs), key=lambda pair: -len(pair[0])))

    def argv(self, container: Mapping[str, Any]) -> list[str]:
        return [
            self.local(container, arg)
            for arg in [*container["command"], *container.get("args", [])]
        ]

    def environ(
        self, container: Mapping[str, Any], extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        path = os.pathsep.join(
            [str(pg_bindir()), str(Path(sys.executable).parent), os.environ["PATH"]]
        )
        env = {"PATH": path, "HOME": str(self.root), "LANG": "C.UTF-8"}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = self.local(container, item["value"])
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.sources.secrets[ref["name"]][ref["key"]]
        return {**env, **(extra or {})}

    def start(
        self, container: Mapping[str, Any], extra: Mapping[str, str] | None = None
    ) -> subprocess.Popen[str]:
        log = self.root / f"{container['name']}.log"
        log.touch()
        chown_to_postgres(log)
        argv = self.argv(container)
        return subprocess.Popen(
            argv if argv[0] == "amrutam" else as_postgres_user(argv),
            env=self.environ(container, extra),
            cwd=self.root,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
        )

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def _finished(self, container: Mapping[str, Any], process: subprocess.Popen[str]) -> Finished:
        name = container["name"]
        message = self.root / f"{name}.termination-log"
        return Finished(
            name,
            process.returncode,
            message.read_text().strip() if message.exists() else "",
            (self.root / f"{name}.log").read_text(),
            container.get("image", ""),
        )

    def run(
        self, timeout: float = 600, extra: Mapping[str, str] | None = None
    ) -> dict[str, Finished]:
        """The pod to its end: init containers one by one (stopping at a failure), then
        the containers together."""
        done: dict[str, Finished] = {}
        for container in self.containers(init=True):
            process = self.start(container, extra)
            process.wait(timeout)
            done[container["name"]] = self._finished(container, process)
            if not done[container["name"]].ok:
                return done
        running = [(c, self.start(c, extra)) for c in self.containers()]
        for container, process in running:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            done[container["name"]] = self._finished(container, process)
        return done

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
