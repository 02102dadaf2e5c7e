"""docker-compose.yml brought up as a user would, with the compose the machine has."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import httpx
import pytest

from amrutam.dev.demo import DEMO_PASSWORD
from amrutam.infra.system import port_in_use
from tests.images.pods import ENGINE

pytestmark = pytest.mark.images

PROJECT = "amrutam-compose-test"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compose() -> list[str]:
    """`docker compose` or `podman compose` when they work, else podman-compose."""
    for command in ([ENGINE, "compose"], ["podman-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return command
    raise AssertionError("no compose: install podman-compose (apt) or docker compose")


def wait_for(path: str, seconds: float, body: dict[str, str] | None = None) -> int | None:
    """The last status of ``path`` on the published port, polled until 200."""
    deadline, status = time.monotonic() + seconds, None
    while time.monotonic() < deadline and status != 200:
        try:
            url = f"http://127.0.0.1:8000{path}"
            answer = httpx.post(url, json=body, timeout=2) if body else httpx.get(url, timeout=2)
            status = answer.status_code
        except httpx.HTTPError:
            status = None
        time.sleep(0 if status == 200 else 1)
    return status


def wait_for_demo_data(seconds: float) -> bool:
    """Whether the seed's last demo doctor appears in the public search in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = httpx.get(
                "http://127.0.0.1:8000/v1/doctors",
                params={"specialty": "general medicine"},
                timeout=2,
            )
            if found.status_code == 200 and found.json()["items"]:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1)
    return False


def test_compose_up_serves_a_ready_api_then_comes_down() -> None:
    assert not port_in_use(8000), "docker-compose.yml publishes port 8000: free it first"
    command = [*compose(), "-p", PROJECT]

    def run(*args: str) -> None:
        subprocess.run([*command, *args], cwd=ROOT, check=True, capture_output=True, timeout=300)

    try:
        run("up", "-d")
        assert wait_for("/readyz", 120) == 200, "the compose stack's API never became ready"
        # The demo data follow the migrations (the same one-off service), which podman-compose
        # may start beside the API. Wait for them through a public read: a login before the
        # account exists is a failed login, and five of those lock it for 15 minutes.
        assert wait_for_demo_data(90), "the demo data never appeared"
        login = {"email": "patient@amrutam.example", "password": DEMO_PASSWORD}
        assert wait_for("/v1/auth/login", 10, login) == 200
    finally:
        run("down", "-v")
    assert not port_in_use(8000)
