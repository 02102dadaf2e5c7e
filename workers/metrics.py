"""Worker metrics and health, scraped from each worker pod.

Counters and latency per task from Celery's signals (prefork children write to the
multiprocess directory), queue depth (queued + reserved + active, from the broker) at
scrape time, and ``/livez``: all served by a small HTTP server in the worker's main
process once it is ready.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from celery import signals
from prometheus_client import Counter, Histogram

from amrutam.infra.metrics import exposition
from amrutam.infra.queues import queue_depth
from amrutam.infra.redis_client import create_redis
from amrutam.settings import get_settings

TASKS = Counter("amrutam_celery_tasks_total", "Tasks finished.", ["task", "outcome"])
RETRIES = Counter("amrutam_celery_task_retries_total", "Task retries.", ["task"])
LATENCY = Histogram(
    "amrutam_celery_task_duration_seconds",
    "Task run time.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 300),
)
_started: dict[str, float] = {}


def install(queues: Sequence[str]) -> None:
    """Connect the task counters and serve /metrics and /livez once the worker is ready."""
    signals.task_prerun.connect(_prerun, weak=False)
    signals.task_postrun.connect(_postrun, weak=False)
    signals.task_retry.connect(_retry, weak=False)
    signals.worker_ready.connect(partial(_serve, queues=tuple(queues)), weak=False)


def _prerun(task_id: str, **_: Any) -> None:
    _started[task_id] = time.perf_counter()


def _postrun(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    began = _started.pop(task_id, None)
    if began is not None:
        LATENCY.labels(task.name).observe(time.perf_counter() - began)
    TASKS.labels(task.name, (state or "unknown").lower()).inc()


def _retry(sender: Any = None, **_: Any) -> None:
    RETRIES.labels(getattr(sender, "name", "unknown")).inc()


def _queue_lines(queues: tuple[str, ...]) -> bytes:
    async def read() -> dict[str, int]:
        redis = create_redis(get_settings())
        try:
            return await queue_depth(redis, list(queues))
        finally:
            await redis.aclose()

    try:
        depth = asyncio.run(read())
    except Exception:  # the broker is down: report no depth rather than fail the scrape
        return b""
    lines = [
        "# HELP amrutam_celery_queue_depth Queued + reserved + active tasks.",
        "# TYPE amrutam_celery_queue_depth gauge",
    ]
    lines += [f'amrutam_celery_queue_depth{{queue="{q}"}} {n}' for q, n in depth.items()]
    return ("\n".join(lines) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    queues: tuple[str, ...] = ()

    def do_GET(self) -> None:
        if self.path == "/livez":
            body, content_type = b'{"status":"ok"}', "application/json"
        elif self.path == "/metrics":
            body, content_type = exposition()
            body += _queue_lines(self.queues)
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: scrapes are frequent
        pass


def _serve(queues: tuple[str, ...], **_: Any) -> None:
    port = get_settings().worker_metrics_port
    handler = type("Handler", (_Handler,), {"queues": queues})
    try:
        server = ThreadingHTTPServer(("0.0.0.0", port), handler)  # noqa: S104 (probed by k8s)
    except OSError:
        return  # another worker on this host already serves; one per pod in the cluster
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
