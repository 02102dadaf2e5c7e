"""RFC 9457 problem+json for every error, whatever raised it."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import asyncpg
import orjson
import redis.exceptions
import sqlalchemy.exc
from sanic import HTTPResponse, Request
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler

from amrutam import errors
from amrutam.infra.db import is_outage
from amrutam.infra.logs import get_logger
from api.fhir import outcome as fhir_outcome

log = get_logger("api.errors")

PROBLEM_TYPE_BASE = "https://amrutam.io/problems/"
CONTENT_TYPE = "application/problem+json"
MAX_FIELD_ERRORS = 20

_DOMAIN_STATUS: list[tuple[type[errors.AmrutamError], int]] = [
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.AuthenticationFailed, 401),
    (errors.PermissionDenied, 403),
    (errors.InvalidInput, 422),
    (errors.Busy, 429),
    (errors.Unavailable, 503),
]


class BadRequest(errors.AmrutamError):
    """The request itself is malformed (bad JSON, a missing required header)."""

    title = "Bad request"


_DOMAIN_STATUS.append((BadRequest, 400))


def _slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    except ValueError:
        return "error"


def problem(
    request: Request | None,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    field_errors: list[errors.FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    kind: str | None = None,
) -> HTTPResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (kind or _slug(status)),
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.path if request is not None else None,
        "request_id": getattr(request.ctx, "request_id", None) if request is not None else None,
    }
    if field_errors is not None:  # the first few: a huge invalid body gets a small answer
        body["errors"] = [
            {"field": e.field, "message": e.message} for e in field_errors[:MAX_FIELD_ERRORS]
        ]
    body.update(extra or {})
    return HTTPResponse(
        orjson.dumps(body), status=status, headers=headers, content_type=CONTENT_TYPE
    )


_UNAVAILABLE = (
    asyncpg.QueryCanceledError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    TimeoutError,
)


def _is_unavailable(exc: BaseException) -> bool:
    return is_outage(exc) or isinstance(exc, _UNAVAILABLE)


def _is_data_error(exc: BaseException) -> bool:
    """PostgreSQL refused a value (class 22: out of range, bad encoding, ...)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        exc = exc.orig or exc
        exc = getattr(exc, "__cause__", None) or exc
    return isinstance(exc, asyncpg.DataError)


def response_for(request: Request | None, exc: BaseException) -> HTTPResponse:
    if isinstance(exc, errors.AmrutamError):
        status = next(code for kind, code in _DOMAIN_STATUS if isinstance(exc, kind))
        headers: dict[str, str] = {}
        if isinstance(exc, errors.Busy):
            headers["Retry-After"] = str(exc.retry_after)
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="amrutam"'
        field_errors = exc.errors if isinstance(exc, errors.InvalidInput) else None
        return problem(
            request,
            status,
            exc.detail,
            title=exc.title,
            field_errors=field_errors,
            headers=headers,
            kind=getattr(exc, "kind", None),
        )
    if isinstance(exc, SanicException) and exc.status_code < 500:
        status = exc.status_code
        detail = str(exc) or HTTPStatus(status).phrase
        if status == 400 and "json" in detail.lower():
            detail = "the request body is not valid JSON"
        headers = dict(exc.headers or {})
        if status == 405 and "Allow" not in headers and request is not None:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem(request, status, detail, headers=headers)
    if isinstance(exc, asyncio.CancelledError):  # the client went away; nobody reads this
        return problem(request, 503, "the request was cancelled")
    if _is_data_error(exc):
        # A backstop: input validation should have refused the value already.
        log.warning("request.data_error", error=type(exc).__name__)
        return problem(request, 422, "a value in the request cannot be stored or compared")
    if _is_unavailable(exc):
        log.warning("request.dependency_unavailable", error=repr(exc))
        return problem(
            request,
            503,
            "a backing service is temporarily unavailable; retry shortly",
            headers={"Retry-After": "2"},
        )
    log.error("request.unhandled_error", exc_info=exc)
    return problem(request, 500, "an unexpected error occurred; it has been logged")


def _allowed_methods(request: Request) -> list[str]:
    """The methods a path answers (the router names them for static paths only)."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        try:
            request.app.router.get(request.path, method, request.headers.get("host"))
        except SanicException:
            continue
        allowed.append(method)
    return allowed


class ProblemErrorHandler(ErrorHandler):
    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        try:
            response = response_for(request, exception)
            if request is not None and fhir_outcome.under_base(request.path):
                return fhir_outcome.from_problem(response)
            return response
        except Exception:  # the error handler itself must never fail
            log.exception("request.error_handler_failed", original=repr(exception))
            return problem(None, 500, "an unexpected error occurred; it has been logged")
