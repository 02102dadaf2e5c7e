"""A real Celery worker process, a real SMTP server, and a client to enqueue with."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from celery import Celery

from amrutam.dev.servers import RedisServer, free_port
from tests.helpers import api_env
from tests.servers import ROOT, STARTUP_S


@dataclass
class Mailbox:
    """An SMTP server's behaviour and what it accepted."""

    messages: list[Message] = field(default_factory=list)
    recipients: list[tuple[float, str]] = field(default_factory=list)  # each RCPT TO, timed
    refuse: bool = False
    # Addresses whose delivery hangs (at RCPT TO) this many seconds. Only a test's own:
    # other tests' pending mail (retries) is delivered meanwhile, not queued behind it.
    stalled: dict[str, float] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.recipients.append((time.monotonic(), address))
        if address in self.stalled:
            await asyncio.sleep(self.stalled[address])
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "550 mailbox unavailable"
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in m["To"]]

    def attempts_to(self, address: str) -> list[float]:
        """When each delivery to ``address`` was tried (other tests' mail interleaves)."""
        return [at for at, to in self.recipients if to == address]


@pytest.fixture(scope="session")
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def mailbox(smtp: tuple[Mailbox, int]) -> Mailbox:
    box = smtp[0]
    box.refuse = False
    box.stalled.clear()
    return box


def worker_env(database_url: str, redis_url: str, smtp_port: int) -> dict[str, str]:
    return {
        **os.environ,
        **api_env(database_url, redis_url),
        "AMRUTAM_NOTIFICATION_PROVIDER": "smtp",
        "AMRUTAM_SMTP_PORT": str(smtp_port),
        "AMRUTAM_SMTP_TIMEOUT_S": "20",
        "AMRUTAM_TASK_MAX_RETRIES": "3",
        "AMRUTAM_TASK_RETRY_BACKOFF_MAX_S": "8",
        "AMRUTAM_TASK_RETRY_JITTER": "false",
        "AMRUTAM_BROKER_VISIBILITY_TIMEOUT_S": "8",
        "AMRUTAM_WORKER_METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="amrutam-worker-metrics-"),
    }


@dataclass
class Worker:
    env: dict[str, str]
    node: str | None = None  # Celery node name, e.g. celery@<pod name>
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    def start(self) -> Worker:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.app",
                "worker",
                "--loglevel=INFO",
                "--queues=default,notifications,maintenance",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                *([f"--hostname={self.node}"] if self.node else []),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_S
        while b"ready." not in self.log.read_bytes():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.kill()
                raise RuntimeError(self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool), as a lost node would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def worker_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis-workers", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker_settings(
    database_url: str, worker_redis: RedisServer, smtp: tuple[Mailbox, int]
) -> dict[str, str]:
    return worker_env(database_url, worker_redis.url(), smtp[1])


@pytest.fixture(scope="session")
def worker(worker_settings: dict[str, str]) -> Iterator[Worker]:
    running = Worker(worker_settings).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def broker(worker_redis: RedisServer) -> Celery:
    return Celery("tests", broker=worker_redis.url())


def wait_for(check: Any, timeout: float = 30, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")
