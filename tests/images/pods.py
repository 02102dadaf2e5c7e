"""Pods of the rendered chart and of the operator's Jobs, run as containers of the built
images, as a kubelet would run them.

Each pod is a podman (or docker) pod on one bridge network: its containers share the
network namespace (``localhost`` between them, as in Kubernetes), and Service names
resolve to the pod that serves them (``--add-host``, standing in for cluster DNS). Every
container gets what its spec says and nothing more: the image, ``command`` as the
entrypoint and ``args`` after it, its environment (``env`` with secret and ConfigMap
references, ``envFrom``), its user and group, the pod's ``fsGroup`` as an extra group,
no capabilities and no privilege escalation when the spec drops them, a read-only root
filesystem when asked (with no tmpfs added), and its volumes:

- ConfigMaps and Secrets are files owned by root in the ``fsGroup``, with the volume's
  mode plus group read (the kubelet's rule), mounted read-only;
- an emptyDir is an empty world-writable folder; a claim (or an ephemeral volume) is a
  folder the test names, given to the ``fsGroup`` as the kubelet does (setgid, group
  writable), so a restored claim can be mounted again by the next pod;
- the termination message is a file bound at ``terminationMessagePath``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.pods import TERMINATION_LOG, Finished

ENGINE = os.environ.get("ENGINE", "podman")


def engine(*args: str, check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(
        [ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"{ENGINE} {' '.join(args[:3])}…: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class Objects:
    """What the cluster holds: the rendered ConfigMaps and Secrets, and claims as folders."""

    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    claims: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def rendered(cls, docs: list[dict[str, Any]]) -> Objects:
        found = cls()
        for doc in docs:
            name = doc["metadata"]["name"]
            if doc["kind"] == "ConfigMap":
                found.configmaps[name] = dict(doc.get("data") or {})
            elif doc["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
                found.secrets[name] = {**data, **(doc.get("stringData") or {})}
        return found


class Network:
    """A bridge network, and the Service names that resolve on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        engine("network", "rm", "-f", name, check=False)
        engine("network", "create", name)
        self.hosts: dict[str, str] = {}

    @property
    def gateway(self) -> str:
        found = json.loads(engine("network", "inspect", self.name))[0]
        return str(found["subnets"][0]["gateway"])

    def serve(self, ip: str, *names: str) -> None:
        for name in names:
            self.hosts[name] = ip

    def remove(self) -> None:
        engine("network", "rm", "-f", self.name, check=False)


class Pod:
    def __init__(
        self, name: str, spec: Mapping[str, Any], root: Path, objects: Objects, network: Network
    ) -> None:
        self.name, self.spec, self.root, self.objects = name, spec, root, objects
        root.mkdir(parents=True, exist_ok=True)
        security = spec.get("securityContext") or {}
        self.fs_group: int | None = security.get("fsGroup")
        self.volumes = {v["name"]: self._volume(v) for v in spec.get("volumes", [])}
        engine("pod", "rm", "-f", name, check=False)
        hosts = [f"--add-host={host}:{ip}" for host, ip in network.hosts.items()]
        engine("pod", "create", "--name", name, f"--network={network.name}", *hosts)
        engine("pod", "start", name)
        self.started: dict[str, float] = {}

    @property
    def ip(self) -> str:
        infra = json.loads(engine("pod", "inspect", self.name))
        infra = infra[0] if isinstance(infra, list) else infra
        details = json.loads(engine("inspect", infra["InfraContainerID"]))[0]
        networks = details["NetworkSettings"]["Networks"]
        return str(next(iter(networks.values()))["IPAddress"])

    def _give_to_group(self, path: Path, mode: int) -> None:
        if self.fs_group is not None:
            os.chown(path, 0, self.fs_group)
        path.chmod(mode)

    def _volume(self, volume: Mapping[str, Any]) -> Path:
        name = volume["name"]
        if "persistentVolumeClaim" in volume or "ephemeral" in volume:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName", "")
            path = self.objects.claims.get(claim) or self.root / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            self._give_to_group(path, 0o2775)
            return path
        path = self.root / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            path.chmod(0o777)
            return path
        if "configMap" in volume:
            source = volume["configMap"]
            files = self.objects.configmaps[source["name"]]
        elif "secret" in volume:
            source = volume["secret"]
            files = self.objects.secrets[source["secretName"]]
        else:
            raise NotImplementedError(f"volume {name}: {sorted(volume)}")
        mode = int(source.get("defaultMode", 0o644))
        if self.fs_group is not None:
            mode |= 0o440
        for key, text in files.items():
            (path / key).write_text(text)
            self._give_to_group(path / key, mode)
        path.chmod(0o755)
        return path

    def _environment(self, container: Mapping[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env |= self.objects.configmaps[source["configMapRef"]["name"]]
            else:
                env |= self.objects.secrets[source["secretRef"]["name"]]
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "secretKeyRef" in item["valueFrom"]:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.objects.secrets[ref["name"]][ref["key"]]
            elif "configMapKeyRef" in item["valueFrom"]:
                ref = item["valueFrom"]["configMapKeyRef"]
                env[item["name"]] = self.objects.configmaps[ref["name"]][ref["key"]]
            else:  # the downward API
                field_path = item["valueFrom"]["fieldRef"]["fieldPath"]
                env[item["name"]] = {"metadata.name": self.name}[field_path]
        return env

    def _expanded(self, args: list[str], env: Mapping[str, str]) -> list[str]:
        """``$(NAME)`` in command and args, from the container's environment (kubelet)."""
        return [
            re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg)
            for arg in args
        ]

    def _security(self, container: Mapping[str, Any]) -> list[str]:
        pod = self.spec.get("securityContext") or {}
        own = container.get("securityContext") or {}
        user, group = (
            own.get("runAsUser", pod.get("runAsUser")),
            own.get("runAsGroup", pod.get("runAsGroup")),
        )
        args = []
        if user is not None:
            args.append(f"--user={user}" + (f":{group}" if group is not None else ""))
        if self.fs_group is not None:
            args.append(f"--group-add={self.fs_group}")
        if own.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        if "ALL" in (own.get("capabilities") or {}).get("drop", []):
            args.append("--cap-drop=ALL")
        if own.get("allowPrivilegeEscalation") is False:
            args.append("--security-opt=no-new-privileges")
        return args

    def _mounts(self, container: Mapping[str, Any]) -> list[str]:
        args = []
        for mount in container.get("volumeMounts", []):
            source = self.volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
            suffix = ":ro" if mount.get("readOnly") else ""
            args.append(f"--volume={source}:{mount['mountPath']}{suffix}")
        message = self.message_file(container["name"])
        message.touch()
        message.chmod(0o666)
        path = container.get("terminationMessagePath", TERMINATION_LOG)
        return [*args, f"--volume={message}:{path}"]

    def message_file(self, name: str) -> Path:
        return self.root / f"{name}.termination-log"

    def container_name(self, name: str) -> str:
        return f"{self.name}-{name}"

    def start(self, container: Mapping[str, Any], *extra: str) -> str:
        """Starts one container of the pod (detached); returns its name."""
        name = self.container_name(container["name"])
        engine("rm", "-f", name, check=False)
        env = self._environment(container)
        command = self._expanded(container.get("command", []), env)
        entrypoint = [f"--entrypoint={json.dumps(command)}"] if command else []
        self.started[container["name"]] = time.monotonic()
        engine(
            "run",
            "--detach",
            f"--name={name}",
            f"--pod={self.name}",
            *self._security(container),
            *(f"--env={key}={value}" for key, value in env.items()),
            *self._mounts(container),
            *entrypoint,
            *extra,
            container["image"],
            *self._expanded(container.get("args", []), env),
        )
        return name

    def container(self, name: str) -> dict[str, Any]:
        everything = [*self.spec.get("initContainers", []), *self.spec.get("containers", [])]
        return next(c for c in everything if c["name"] == name)

    def logs(self, name: str) -> str:
        done = subprocess.run(
            [ENGINE, "logs", self.container_name(name)],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout + done.stderr

    def wait(self, container: Mapping[str, Any], timeout: float) -> Finished:
        name = self.container_name(container["name"])
        code = int(engine("wait", name, timeout=timeout).splitlines()[-1])
        message = self.message_file(container["name"]).read_text().strip()
        return Finished(container["name"], code, message, self.logs(container["name"]))

    def run(self, timeout: float = 300, *extra: str) -> dict[str, Finished]:
        """The pod to its end: init containers in order (stopping at a failure), then the
        containers together; ``extra`` are further arguments for each container."""
        done: dict[str, Finished] = {}
        for container in self.spec.get("initContainers", []):
            self.start(container, *extra)
            done[container["name"]] = self.wait(container, timeout)
            if not done[container["name"]].ok:
                return done
        for container in self.spec.get("containers", []):
            self.start(container, *extra)
        for container in self.spec.get("containers", []):
            done[container["name"]] = self.wait(container, timeout)
        return done

    def exec(self, container: str, *argv: str) -> str:
        return engine("exec", self.container_name(container), *argv)

    def remove(self) -> None:
        engine("pod", "rm", "-f", self.name, check=False)


def clear(path: Path) -> None:
    """Folders the containers wrote in belong to their users: root removes them."""
    shutil.rmtree(path, ignore_errors=True)
