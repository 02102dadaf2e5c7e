"""/v1/auth: register, login (with a second factor), refresh, logout, me, sessions, MFA."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request

from amrutam.auth.schemas import (
    AuthResult,
    Credentials,
    LoginAnswer,
    MfaCode,
    MfaSetup,
    MfaVerification,
    PasswordChange,
    RecoveryCodes,
    RefreshRequest,
    Registration,
    SessionList,
    UserOut,
)
from api.contract import contract
from api.guards import actor, principal, require
from api.middleware import note_rate_limit, services
from api.responses import json_response
from api.validation import parse_body

bp = Blueprint("auth", url_prefix="/v1/auth")


def _user_agent(request: Request) -> str | None:
    return request.headers.get("user-agent")


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
    result = await services(request).auth.register(actor(request), data, _user_agent(request))
    return json_response(result, 201)


@bp.post("/login", ctx_sealed=True)
@contract(
    "Log in with email and password (then /mfa/verify when the account has a second factor)",
    tag="auth",
    body=Credentials,
    response=LoginAnswer,
    errors=(401,),
)
async def login(request: Request) -> HTTPResponse:
    credentials = parse_body(request, Credentials)
    result = await services(request).auth.login(
        actor(request),
        credentials,
        _user_agent(request),
        note=lambda decision: note_rate_limit(request, decision),
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
@contract(
    "End this session: its refresh tokens and, at once, its access tokens", tag="auth", ok=204
)
@require(enrolling=True)
async def logout(request: Request) -> HTTPResponse:
    family_id = principal(request).family_id
    if family_id is not None:
        await services(request).auth.logout(actor(request), family_id=family_id)
    return HTTPResponse(status=204)


@bp.get("/me")
@contract("The caller's account", tag="auth", response=UserOut, errors=(404,))
@require(enrolling=True)
async def me(request: Request) -> HTTPResponse:
    return json_response(await services(request).auth.user(principal(request).user_id))


@bp.get("/sessions")
@contract("The caller's open sessions (one per login)", tag="auth", response=SessionList)
@require()
async def sessions(request: Request) -> HTTPResponse:
    who = principal(request)
    found = await services(request).auth.sessions(who.user_id, who.family_id)
    return json_response(SessionList(found))


@bp.delete("/sessions/<session_id:uuid>")
@contract("End one of the caller's sessions", tag="auth", ok=204, errors=(404,))
@require()
async def revoke_session(request: Request, session_id: uuid.UUID) -> HTTPResponse:
    await services(request).auth.revoke_session(actor(request), session_id)
    return HTTPResponse(status=204)


@bp.post("/mfa/setup", ctx_sealed=True)
@contract(
    "Start setting up a TOTP second factor (in force once confirmed)",
    tag="auth",
    response=MfaSetup,
    errors=(409,),
)
@require(enrolling=True)
async def mfa_setup(request: Request) -> HTTPResponse:
    auth = services(request).auth
    me = await auth.user(principal(request).user_id)
    return json_response(await auth.factors.setup(actor(request), me.email))


@bp.post("/mfa/confirm", ctx_sealed=True)
@contract(
    "Turn the second factor on with a code from it; ten recovery codes, shown once",
    tag="auth",
    body=MfaCode,
    response=RecoveryCodes,
    errors=(409, 429),
)
@require(enrolling=True)
async def mfa_confirm(request: Request) -> HTTPResponse:
    data = parse_body(request, MfaCode)
    keep = principal(request).family_id
    return json_response(
        await services(request).auth.factors.confirm(actor(request), data.code, keep)
    )


@bp.post("/password", ctx_sealed=True)
@contract(
    "Change the password; every other session of the account ends (this one stays)",
    tag="auth",
    body=PasswordChange,
    ok=204,
    errors=(429,),
)
@require(enrolling=True)
async def change_password(request: Request) -> HTTPResponse:
    data = parse_body(request, PasswordChange)
    keep = principal(request).family_id
    await services(request).auth.password_changes.change(actor(request), keep, data)
    return HTTPResponse(status=204)


@bp.post("/mfa/verify", ctx_sealed=True)
@contract(
    "The second step of a login: a TOTP code or an unused recovery code",
    tag="auth",
    body=MfaVerification,
    response=AuthResult,
    errors=(401, 429),
)
async def mfa_verify(request: Request) -> HTTPResponse:
    data = parse_body(request, MfaVerification)
    result = await services(request).auth.verify_mfa(
        actor(request), data.mfa_token, data.code, _user_agent(request)
    )
    return json_response(result)


@bp.delete("/mfa")
@contract(
    "Turn the second factor off, with a code from it",
    tag="auth",
    ok=204,
    body=MfaCode,
    errors=(409, 429),
)
@require(enrolling=True)
async def mfa_disable(request: Request) -> HTTPResponse:
    data = parse_body(request, MfaCode)
    await services(request).auth.factors.disable(actor(request), data.code)
    return HTTPResponse(status=204)
