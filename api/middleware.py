"""What every request passes through, in this order:

request id and log context → authentication → rate limit → idempotency → handler,
then on the way out: idempotency record → rate-limit headers → request id → metrics
and the access log.

The rate-limit hit rides on the request's first Redis script: the idempotency claim of a
write, the cache read of a cached read (routes whose contract says ``cached``, or whose
contract's function says so for the request; their hit is settled after the handler when
no cache read carried it). Any other request sends it alone, before its handler runs.
The hit also asks whether the caller's session has ended (logout, revocation); when
Redis cannot say, the database does.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from functools import wraps
from typing import Any

import structlog
from redis.exceptions import RedisError
from sanic import HTTPResponse, Request, Sanic

from amrutam.auth.sessions import marker_key
from amrutam.errors import AuthenticationFailed, Conflict, FieldError, InvalidInput
from amrutam.infra.idempotency import Outcome, StoredResponse, fingerprint
from amrutam.infra.logs import get_logger
from amrutam.infra.metrics import REDIS_DEGRADED
from amrutam.infra.ratelimit import Decision, Hit, pending_hit
from api.context import Services
from api.guards import Handler
from api.metrics import IN_FLIGHT, series
from api.problems import BadRequest

log = get_logger("api.access")
_ACCESS_LOG = logging.getLogger("api.access")  # the level check alone is cached by logging

UNLIMITED_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]{1,255}")
# A client's X-Request-ID: the whole value, at most 128 visible ASCII characters (G3: a
# check of its first 128 let 7,000 characters into the append-only audit trail).
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
_REPLAYED_HEADERS = ("content-type", "location")
# Metric labels: a client-chosen method must not create a new series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def services(request: Request) -> Services:
    return request.app.ctx.services  # type: ignore[no-any-return]


def install(app: Sanic[Any, Any]) -> None:
    app.on_request(_before, priority=100)
    app.on_response(_after, priority=100)  # type: ignore[no-untyped-call]

    @app.before_server_start
    async def _mark_cached_reads(app: Sanic[Any, Any]) -> None:
        for route in app.router.routes:
            # A /v1 route's contract or a /fhir/R4 route's interaction says so.
            marks = (getattr(route.handler, name, None) for name in ("contract", "fhir"))
            cached = next((mark.cached for mark in marks if mark and mark.cached), None)
            if cached is not None and route.methods <= {"GET", "HEAD"}:
                route.ctx.cached_read = cached if callable(cached) else _always
                route.handler = settles_rate_limit_after(route.handler)


def _always(request: Request) -> bool:
    return True


async def _before(request: Request) -> HTTPResponse | None:
    ctx = request.ctx
    ctx.started = time.perf_counter()
    # The server names every request itself (the audit trail's request_id); a client's
    # own X-Request-ID is echoed and kept beside it for correlation, never in its place.
    # 128 random bits as 32 hex digits (a fifth of uuid4().hex's cost, the same format).
    ctx.server_request_id = secrets.token_hex(16)
    incoming = request.headers.get("x-request-id", "")
    ctx.client_request_id = incoming if _CLIENT_REQUEST_ID.fullmatch(incoming) else None
    ctx.request_id = ctx.client_request_id or ctx.server_request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=ctx.request_id, server_request_id=ctx.server_request_id
    )
    IN_FLIGHT.inc()
    ctx.in_flight = True

    _authenticate(request)
    pending_hit.set(None)
    ctx.rate_hit = None if request.path in UNLIMITED_PATHS else _defer_rate_limit(request)
    # A cached read is public: its caller only decides which rate limit counts it.
    cached_when = getattr(request.route.ctx, "cached_read", None) if request.route else None
    cached_read = cached_when is not None and cached_when(request)
    try:
        replay = await _idempotency_claim(request)
    finally:
        # Also when the claim refused the request before sending the hit along (a missing
        # key): it still counts, and over the limit 429 comes first.
        if ctx.rate_hit is not None and not cached_read:
            await services(request).limiter.settle(ctx.rate_hit)
    checked = ctx.rate_hit is not None and not cached_read
    if ctx.principal is not None and checked and not await _session_open(request):
        ctx.principal = None
        ctx.auth_error = AuthenticationFailed("this session has ended; log in again")
        if replay is not None and _needs_caller(request):
            raise ctx.auth_error
    return replay


def _authenticate(request: Request) -> None:
    """Who is calling. A bad or expired token makes the caller anonymous here; the
    error is kept for the routes that need a caller (``guards.principal`` raises it), so
    a stale header neither blocks public routes nor escapes the anonymous rate limit."""
    request.ctx.principal, request.ctx.auth_error = None, None
    header = request.headers.get("authorization")
    if header is None:
        return
    scheme, _, token = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("use the Authorization: Bearer <access token> header")
        principal = services(request).auth.access_tokens.verify(token.strip())
    except AuthenticationFailed as exc:
        request.ctx.auth_error = exc
        return
    request.ctx.principal = principal
    structlog.contextvars.bind_contextvars(user_id=str(principal.user_id))


def _defer_rate_limit(request: Request) -> Hit:
    svc = services(request)
    principal = request.ctx.principal
    if principal is not None:
        marker = marker_key(principal.family_id) if principal.family_id else ""
        return svc.limiter.defer(svc.policies.user, str(principal.user_id), marker=marker)
    return svc.limiter.defer(svc.policies.anonymous, request.client_ip)


async def _session_open(request: Request) -> bool:
    """Whether the caller's session is still open: Redis' answer, carried by the rate-limit
    hit, or the database's when Redis gave none."""
    principal = request.ctx.principal
    if principal.family_id is None:
        return True
    hit: Hit | None = request.ctx.rate_hit
    if hit is not None and hit.revoked is not None:
        return not hit.revoked
    return await services(request).auth.session_open(principal.family_id)


def _needs_caller(request: Request) -> bool:
    return request.route is not None and getattr(request.route.handler, "roles", None) is not None


def settles_rate_limit_after(handler: Handler) -> Handler:
    """A cached read's handler, then its rate-limit hit if no cache read carried it: 429
    (over the handler's own answer) when it is over the limit."""

    @wraps(handler)
    async def run(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
        try:
            return await handler(request, *args, **kwargs)
        finally:
            hit: Hit | None = request.ctx.rate_hit
            if hit is not None and hit.decision is None:
                await services(request).limiter.settle(hit)

    return run


def note_rate_limit(request: Request, decision: Decision) -> None:
    """Report the tightest limit seen for this request in its response headers."""
    current: Decision | None = getattr(request.ctx, "rate", None)
    if current is None or not decision.allowed or decision.remaining < current.remaining:
        request.ctx.rate = decision


def _caller_scope(request: Request) -> str:
    principal = request.ctx.principal
    return f"user:{principal.user_id}" if principal else f"ip:{request.client_ip}"


async def _idempotency_claim(request: Request) -> HTTPResponse | None:
    request.ctx.idempotency = None
    if request.method not in ("POST", "PUT", "PATCH") or request.route is None:
        return None
    if request.ctx.principal is None and _needs_caller(request):
        return None  # the route needs a caller: it answers 401 before any key is looked at
    mode = getattr(request.route.ctx, "idempotency", None)
    key = request.headers.get("idempotency-key")
    if key is None:
        if mode == "required":
            raise BadRequest("this request needs an Idempotency-Key header")
        return None
    if not _VISIBLE_ASCII.fullmatch(key):
        raise BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters")
    scope, print_ = _caller_scope(request), fingerprint(request.method, request.path, request.body)
    store = services(request).idempotency
    try:
        claim = await store.claim(scope, key, print_)
    except RedisError as exc:
        # Without Redis there is no replay; the database constraints still prevent
        # duplicates that matter (a slot booked twice), so serve rather than fail.
        REDIS_DEGRADED.labels("idempotency").inc()
        log.warning("idempotency.redis_unavailable", error=str(exc))
        return None
    if claim.outcome is Outcome.STARTED:
        request.ctx.idempotency = (scope, key, print_)
        return None
    if claim.outcome is Outcome.IN_FLIGHT:
        raise Conflict("a request with this Idempotency-Key is still being processed")
    if claim.outcome is Outcome.MISMATCH:
        raise InvalidInput(
            "this Idempotency-Key was already used for a different request",
            [FieldError("Idempotency-Key", "already used for a different request")],
        )
    assert claim.response is not None
    return HTTPResponse(
        claim.response.body,
        status=claim.response.status,
        headers={**claim.response.headers, "Idempotent-Replayed": "true"},
    )


async def record_idempotency(request: Request, response: HTTPResponse) -> None:
    """Store the response under the request's Idempotency-Key (once)."""
    claimed = getattr(request.ctx, "idempotency", None)
    if claimed is None:
        return
    request.ctx.idempotency = None
    scope, key, print_ = claimed
    store = services(request).idempotency
    try:
        # Server errors, throttling and an ended session are not results: let the client
        # retry them. (Refusals are stored: they are small, at most 20 field errors each.)
        if response.status >= 500 or response.status in (401, 429):
            await store.abandon(scope, key)
        else:
            headers = {h: response.headers[h] for h in _REPLAYED_HEADERS if h in response.headers}
            if response.content_type and "content-type" not in headers:
                headers["content-type"] = response.content_type
            sealed = bool(request.route and getattr(request.route.ctx, "sealed", False))
            stored = StoredResponse(response.status, response.body or b"", headers)
            await store.complete(scope, key, print_, stored, sealed=sealed)
    except RedisError as exc:
        REDIS_DEGRADED.labels("idempotency").inc()
        log.warning("idempotency.record_failed", error=str(exc))


def _rate_limit_headers(request: Request, response: HTTPResponse) -> None:
    decision: Decision | None = getattr(request.ctx, "rate", None)
    if decision is None:
        return
    name = decision.policy.name
    response.headers["RateLimit-Policy"] = (
        f'"{name}";q={decision.limit};w={decision.policy.window_s}'
    )
    response.headers["RateLimit"] = f'"{name}";r={decision.remaining};t={decision.reset_in}'
    if not decision.allowed:
        response.headers.setdefault("Retry-After", str(decision.reset_in))


def _protective_headers(request: Request, response: HTTPResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # Tokens and anything read with a caller's credentials are never stored by a cache
    # (RFC 6749 5.1); the public directory (search, profiles, open slots) may be.
    personal = request.headers.get("authorization") is not None or request.path.startswith(
        "/v1/auth/"
    )
    if personal or response.status >= 400:
        response.headers["Cache-Control"] = "no-store"


async def _after(request: Request, response: HTTPResponse) -> None:
    ctx = request.ctx
    hit: Hit | None = getattr(ctx, "rate_hit", None)
    if hit is not None and hit.decision is not None:
        note_rate_limit(request, hit.decision)
    await record_idempotency(request, response)
    _rate_limit_headers(request, response)
    request_id = getattr(ctx, "request_id", None) or secrets.token_hex(16)
    response.headers["X-Request-ID"] = request_id
    _protective_headers(request, response)

    route = "/" + request.route.path if request.route else "<unmatched>"
    started = getattr(ctx, "started", None)
    elapsed = time.perf_counter() - started if started is not None else 0.0
    method = request.method if request.method in _METHODS else "OTHER"
    count, latency = series(method, route, response.status)
    count.inc()
    latency.observe(elapsed)
    if getattr(ctx, "in_flight", False):
        IN_FLIGHT.dec()
        ctx.in_flight = False
    if not _ACCESS_LOG.isEnabledFor(logging.INFO):
        return
    principal = getattr(ctx, "principal", None)
    log.info(
        "request",
        method=request.method,
        route=route,
        path=request.path,
        status=response.status,
        latency_ms=round(elapsed * 1000, 2),
        user_id=str(principal.user_id) if principal else None,
        client_ip=request.client_ip,
    )
