"""Writes that finish even when the client goes away.

Sanic cancels a request's task when its connection drops. For a booking that would
leave the client not knowing whether it happened, so these handlers run in a task
shielded from that cancellation, and record their idempotent response themselves: a
retry with the same Idempotency-Key then gets the original answer. They ride out a
database outage inside that task, since their errors become responses there.
"""

from __future__ import annotations

import asyncio
from functools import wraps
from typing import Any

from sanic import HTTPResponse, Request

from api.guards import Handler
from api.middleware import record_idempotency
from api.outages import rides_out_outages
from api.problems import response_for


def finishes_if_disconnected(handler: Handler) -> Handler:
    patient = rides_out_outages(handler)

    @wraps(handler)
    async def run(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
        async def work() -> HTTPResponse:
            try:
                response = await patient(request, *args, **kwargs)
            except Exception as exc:  # answered as problem+json, like any error
                response = response_for(request, exc)
            await record_idempotency(request, response)
            return response

        return await asyncio.shield(asyncio.ensure_future(work()))

    return run
