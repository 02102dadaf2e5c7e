"""/v1/auth: register, login, refresh, logout, me."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request

from amrutam.auth.schemas import AuthResult, Credentials, RefreshRequest, Registration, UserOut
from api.contract import contract
from api.guards import actor, principal, require
from api.middleware import note_rate_limit, services
from api.responses import json_response
from api.validation import parse_body

bp = Blueprint("auth", url_prefix="/v1/auth")


@bp.post("/register", ctx_sealed=True)
@contract(
    "Register a patient or doctor",
    tag="auth",
    ok=201,
    body=Registration,
    response=AuthResult,
    errors=(409,),
)
async def register(request: Request) -> HTTPResponse:
    data = parse_body(request, Registration)
    return json_response(await services(request).auth.register(actor(request), data), 201)


@bp.post("/login", ctx_sealed=True)
@contract(
    "Log in with email and password",
    tag="auth",
    body=Credentials,
    response=AuthResult,
    errors=(401,),
)
async def login(request: Request) -> HTTPResponse:
    credentials = parse_body(request, Credentials)
    result = await services(request).auth.login(
        actor(request), credentials, note=lambda decision: note_rate_limit(request, decision)
    )
    return json_response(result)


@bp.post("/refresh", ctx_sealed=True)
@contract(
    "Rotate a refresh token", tag="auth", body=RefreshRequest, response=AuthResult, errors=(401,)
)
async def refresh(request: Request) -> HTTPResponse:
    data = parse_body(request, RefreshRequest)
    return json_response(await services(request).auth.refresh(actor(request), data.refresh_token))


@bp.post("/logout")
@contract("Revoke this session's refresh tokens", tag="auth", ok=204)
@require()
async def logout(request: Request) -> HTTPResponse:
    family_id = principal(request).family_id
    if family_id is not None:
        await services(request).auth.logout(actor(request), family_id=family_id)
    return HTTPResponse(status=204)


@bp.get("/me")
@contract("The caller's account", tag="auth", response=UserOut, errors=(404,))
@require()
async def me(request: Request) -> HTTPResponse:
    return json_response(await services(request).auth.user(principal(request).user_id))
