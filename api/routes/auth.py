"""/v1/auth: register, login, refresh, logout, me."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request
from sanic_ext import openapi

from amrutam.auth.schemas import AuthResult, Credentials, RefreshRequest, Registration, UserOut
from amrutam.errors import AuthenticationFailed, Busy
from api.guards import actor, principal, require
from api.middleware import note_rate_limit, services
from api.responses import json_response
from api.validation import parse_body

bp = Blueprint("auth", url_prefix="/v1/auth")


@bp.post("/register")
@openapi.definition(
    summary="Register a patient or doctor",
    body={"application/json": Registration},
    response={"application/json": AuthResult},
    tag="auth",
)
async def register(request: Request) -> HTTPResponse:
    svc = services(request)
    data = parse_body(request, Registration)
    async with svc.db.session() as session:
        result = await svc.auth.register(session, data, actor(request))
        await session.commit()
    return json_response(result, 201)


@bp.post("/login")
@openapi.definition(
    summary="Log in with email and password",
    body={"application/json": Credentials},
    response={"application/json": AuthResult},
    tag="auth",
)
async def login(request: Request) -> HTTPResponse:
    svc = services(request)
    credentials = parse_body(request, Credentials)
    # Every attempt counts against the address; only failures count against the account,
    # so a guessed-at account locks for the guesser without a success resetting others.
    for decision in (
        await svc.limiter.hit(svc.policies.login_ip, request.client_ip),
        await svc.limiter.peek(svc.policies.login_account, credentials.email),
    ):
        note_rate_limit(request, decision)
        if not decision.allowed:
            raise Busy("too many login attempts; try again later", decision.reset_in)
    try:
        async with svc.db.session() as session:
            result = await svc.auth.login(session, credentials, actor(request))
            await session.commit()
    except AuthenticationFailed:
        async with svc.db.session() as session:
            await svc.auth.login_failed(session, credentials.email, actor(request))
            await session.commit()
        note_rate_limit(
            request, await svc.limiter.hit(svc.policies.login_account, credentials.email)
        )
        raise
    await svc.limiter.clear(svc.policies.login_account, credentials.email)
    return json_response(result)


@bp.post("/refresh")
@openapi.definition(
    summary="Rotate a refresh token",
    body={"application/json": RefreshRequest},
    response={"application/json": AuthResult},
    tag="auth",
)
async def refresh(request: Request) -> HTTPResponse:
    svc = services(request)
    data = parse_body(request, RefreshRequest)
    async with svc.db.session() as session:
        result = await svc.auth.refresh(session, data.refresh_token, actor(request))
        await session.commit()
    return json_response(result)


@bp.post("/logout")
@openapi.definition(
    summary="Revoke this session's refresh tokens", tag="auth", secured={"bearer": []}
)
@require()
async def logout(request: Request) -> HTTPResponse:
    svc = services(request)
    who = principal(request)
    if who.family_id is not None:
        async with svc.db.session() as session:
            await svc.auth.logout(session, actor(request), who.family_id)
            await session.commit()
    return HTTPResponse(status=204)


@bp.get("/me")
@openapi.definition(
    summary="The caller's account",
    response={"application/json": UserOut},
    tag="auth",
    secured={"bearer": []},
)
@require()
async def me(request: Request) -> HTTPResponse:
    svc = services(request)
    async with svc.db.session() as session:
        user = await svc.auth.get_user(session, principal(request).user_id)
    return json_response(UserOut.model_validate(user, from_attributes=True))
