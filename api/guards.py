"""Authentication and role guards for route handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from sanic import HTTPResponse, Request

from amrutam.audit.log import Actor
from amrutam.auth.tokens import Principal
from amrutam.errors import AuthenticationFailed, EnrolmentRequired, PermissionDenied

P = ParamSpec("P")
R = TypeVar("R", bound=HTTPResponse)

Handler = Callable[..., Awaitable[HTTPResponse]]


def principal(request: Request) -> Principal:
    """The authenticated caller; 401 when the request carries no valid token."""
    found: Principal | None = getattr(request.ctx, "principal", None)
    if found is None:
        raise getattr(request.ctx, "auth_error", None) or AuthenticationFailed(
            "a valid bearer token is required"
        )
    return found


def actor(request: Request) -> Actor:
    """The caller as the audit trail records it (anonymous before authentication)."""
    who: Principal | None = getattr(request.ctx, "principal", None)
    return Actor(
        user_id=who.user_id if who else None,
        role=who.role if who else None,
        request_id=getattr(request.ctx, "server_request_id", None),
        ip=request.client_ip or None,
        client_request_id=getattr(request.ctx, "client_request_id", None),
    )


def require(*roles: str, enrolling: bool = False) -> Callable[[Handler], Handler]:
    """Only authenticated callers, and only in one of ``roles`` when any are given. An
    account that must enrol a second factor first reaches only the routes marked
    ``enrolling`` (its account, the second-factor routes, logout)."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            who = principal(request)
            if who.enrolling and not enrolling:
                raise EnrolmentRequired(
                    "this account must set up a second factor first: /v1/auth/mfa/setup"
                )
            if roles and who.role not in roles:
                raise PermissionDenied(f"this action needs the role {' or '.join(roles)}")
            return await handler(request, *args, **kwargs)

        guarded.__dict__["roles"] = roles  # read by the OpenAPI document (api/openapi.py)
        return guarded

    return decorate
