"""/v1/admin: the audit trail, for administrators."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request

from amrutam.audit.schemas import AuditPage, AuditQuery, VerifyOut, VerifyQuery
from api.contract import contract
from api.guards import actor, require
from api.middleware import services
from api.responses import json_response, raw_json
from api.validation import parse_query

bp = Blueprint("admin", url_prefix="/v1/admin")


@bp.get("/audit-logs")
@contract("Query the audit trail, newest first", tag="admin", query=AuditQuery, response=AuditPage)
@require("admin")
async def audit_logs(request: Request) -> HTTPResponse:
    query = parse_query(request, AuditQuery)
    return raw_json(await services(request).audit.search(actor(request), query))


@bp.get("/audit-logs/verify")
@contract(
    "Check the tamper-evidence of the trail over from..to",
    tag="admin",
    query=VerifyQuery,
    response=VerifyOut,
)
@require("admin")
async def verify(request: Request) -> HTTPResponse:
    query = parse_query(request, VerifyQuery)
    verdict = await services(request).audit.verify(actor(request), query.from_, query.to)
    return json_response(verdict.as_dict())
