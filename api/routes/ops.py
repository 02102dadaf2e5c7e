"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sanic import Blueprint, HTTPResponse, Request

from amrutam.infra.metrics import exposition
from api.middleware import services
from api.problems import problem
from api.responses import json_response, raw_json

bp = Blueprint("ops")
CHECK_TIMEOUT_S = 1.0


@bp.get("/livez")
async def livez(request: Request) -> HTTPResponse:
    return json_response({"status": "ok"})


async def _postgres(request: Request) -> None:
    async with services(request).db.engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def _redis(request: Request) -> None:
    await services(request).redis.ping()


@bp.get("/readyz")
async def readyz(request: Request) -> HTTPResponse:
    checks: dict[str, str] = {}
    for name, check in (("postgres", _postgres), ("redis", _redis)):
        try:
            await asyncio.wait_for(check(request), CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; the reason is reported
            checks[name] = f"failed: {type(exc).__name__}"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        detail = "not ready: " + ", ".join(failed) + " unavailable"
        return problem(request, 503, detail, extra={"checks": checks}, headers={"Retry-After": "2"})
    return json_response({"status": "ok", "checks": checks})


@bp.get("/metrics")
async def metrics(request: Request) -> HTTPResponse:
    """Here only when no metrics port is configured: with one, Prometheus needs no
    access to the API port, and the API port shows nothing but the API."""
    if services(request).settings.metrics_port:
        return problem(request, 404, "metrics are served on the metrics port")
    body, content_type = exposition()
    return HTTPResponse(body, content_type=content_type)


@bp.get("/openapi.json")
async def openapi_document(request: Request) -> HTTPResponse:
    """Built once per process from the routes (``api/openapi.py``)."""
    return raw_json(request.app.ctx.openapi)
