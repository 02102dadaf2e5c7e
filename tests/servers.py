"""The API as a real server process, started by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from amrutam.dev.servers import free_port

ROOT = Path(__file__).resolve().parent.parent

# How long a server process the tests start may take to answer. It bounds a hang, it
# times nothing: with the suite in two processes, several servers import at once on two
# cores, and one API took 30-38 s to answer in a CI run (about 5 s on a quiet machine).
STARTUP_S = 120


@dataclass
class ApiServer:
    env: dict[str, str]
    workers: int = 2
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="amrutam-api-", suffix=".log")[1])
    )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        env = {
            **os.environ,
            **self.env,
            "AMRUTAM_PORT": str(self.port),
            "AMRUTAM_WORKERS": str(self.workers),
        }
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Sanic's manager kills its workers' whole process group when its shutdown is
            # interrupted: that group must not be the test run's.
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"API exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/livez", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()  # the fixture that called start() will not: leave no server behind
        raise RuntimeError(f"API did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
