"""Requests ride out a short database outage (a restart, a failover) instead of failing.

Every route handler runs under one deadline, ``db_wait_s`` from its start. Getting a
connection waits for the database until then (``Database._connect``), and a handler
whose connection was lost mid-way, or whose write reached a demoted primary, is run
again, unless it had already sent a COMMIT: then whether it happened is unknown, and the
client's retry with the same ``Idempotency-Key`` settles it. A transaction cut off before
its COMMIT was rolled back by the server, so running it again does nothing twice. Past
the deadline the error stands: 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import inspect
from functools import wraps
from typing import Any

from sanic import HTTPResponse, Request, Sanic

from amrutam.infra.db import Attempt, current_attempt, is_outage
from amrutam.infra.logs import get_logger
from amrutam.infra.metrics import DB_WAITS
from api.guards import Handler
from api.middleware import services

log = get_logger("api.outages")

_FIRST_PAUSE_S, _LONGEST_PAUSE_S = 0.05, 0.4


def rides_out_outages(handler: Handler) -> Handler:
    @wraps(handler)
    async def run(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
        loop = asyncio.get_running_loop()
        outer = current_attempt.get()  # a wrapped handler inside a wrapped handler
        deadline = outer.deadline if outer else loop.time() + services(request).db.wait_s
        pause = _FIRST_PAUSE_S
        while True:
            attempt = Attempt(deadline)
            token = current_attempt.set(attempt)
            try:
                return await handler(request, *args, **kwargs)
            except Exception as exc:
                if attempt.commit_sent or not is_outage(exc) or loop.time() + pause > deadline:
                    raise
                DB_WAITS.labels("repeated").inc()
                log.info("request.repeated_after_outage", error=type(exc).__name__)
            finally:
                current_attempt.reset(token)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE_S)

    return run


def install(app: Sanic[Any, Any]) -> None:
    """Wrap every route's coroutine handler, once the router is final (the plain
    functions, such as the documentation page's, never reach the database)."""

    @app.before_server_start
    async def _wrap(app: Sanic[Any, Any]) -> None:
        for route in app.router.routes:
            if inspect.iscoroutinefunction(route.handler):
                route.handler = rides_out_outages(route.handler)
