"""/v1/admin: the audit trail, for administrators."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request
from sanic_ext import openapi

from amrutam.audit.schemas import AuditPage, AuditQuery, VerifyOut, VerifyQuery
from api.guards import BEARER, actor, require
from api.middleware import services
from api.responses import json_response, raw_json
from api.validation import parse_query

bp = Blueprint("admin", url_prefix="/v1/admin")


@bp.get("/audit-logs")
@openapi.definition(
    summary="Query the audit trail, newest first",
    tag="admin",
    secured=BEARER,
    response={"application/json": AuditPage},
)
@openapi.parameter("actor_id", str)
@openapi.parameter("action", str)
@openapi.parameter("entity_type", str)
@openapi.parameter("entity_id", str)
@openapi.parameter("from", str)
@openapi.parameter("to", str)
@openapi.parameter("limit", int)
@openapi.parameter("cursor", str)
@require("admin")
async def audit_logs(request: Request) -> HTTPResponse:
    query = parse_query(request, AuditQuery)
    return raw_json(await services(request).audit.search(actor(request), query))


@bp.get("/audit-logs/verify")
@openapi.definition(
    summary="Check the tamper-evidence of the trail over from..to",
    tag="admin",
    secured=BEARER,
    response={"application/json": VerifyOut},
)
@openapi.parameter("from", str)
@openapi.parameter("to", str)
@require("admin")
async def verify(request: Request) -> HTTPResponse:
    query = parse_query(request, VerifyQuery)
    verdict = await services(request).audit.verify(actor(request), query.from_, query.to)
    return json_response(verdict.as_dict())
