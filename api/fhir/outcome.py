"""Every error under /fhir/R4 as an ``OperationOutcome``, with the status, headers and
wording the ``/v1`` problem document has (one error path: ``api/problems.py``)."""

from __future__ import annotations

from typing import Any

import orjson
from sanic import HTTPResponse

BASE = "/fhir/R4"
CONTENT_TYPE = "application/fhir+json"


def under_base(path: str) -> bool:
    return path == BASE or path.startswith(BASE + "/")


# OperationOutcome.issue.code (http://hl7.org/fhir/issue-type) by HTTP status.
_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    503: "transient",
}


def outcome(
    status: int, diagnostics: str, fields: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    severity = "error" if status < 500 else "fatal"
    code = _CODES.get(status, "exception")
    issue: dict[str, Any] = {"severity": severity, "code": code}
    issues = [{**issue, "diagnostics": diagnostics}]
    issues += [
        {**issue, "diagnostics": f["message"], "expression": [f["field"]]} for f in fields or []
    ]
    return {"resourceType": "OperationOutcome", "issue": issues}


def from_problem(problem: HTTPResponse) -> HTTPResponse:
    """The problem+json response ``api/problems.py`` made, as an OperationOutcome."""
    body = orjson.loads(problem.body or b"{}")
    found = outcome(problem.status, body.get("detail") or "error", body.get("errors"))
    headers = {k: v for k, v in problem.headers.items() if k.lower() != "content-type"}
    return HTTPResponse(
        orjson.dumps(found), status=problem.status, headers=headers, content_type=CONTENT_TYPE
    )
