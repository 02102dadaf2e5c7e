"""Role guards, checked on the decorator that every protected route uses."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from sanic import HTTPResponse

from amrutam.auth.tokens import Principal
from amrutam.errors import AuthenticationFailed, PermissionDenied
from api.guards import require


@require("doctor", "admin")
async def _doctor_or_admin(request: Any) -> HTTPResponse:
    return HTTPResponse(status=204)


@require()
async def _anyone_signed_in(request: Any) -> HTTPResponse:
    return HTTPResponse(status=204)


def _request(role: str | None) -> Any:
    principal = Principal(uuid.uuid4(), role) if role else None
    return SimpleNamespace(ctx=SimpleNamespace(principal=principal))


@pytest.mark.parametrize("role", ["doctor", "admin"])
async def test_allowed_roles_pass(role: str) -> None:
    assert (await _doctor_or_admin(_request(role))).status == 204


async def test_other_roles_get_403() -> None:
    with pytest.raises(PermissionDenied):
        await _doctor_or_admin(_request("patient"))


async def test_no_principal_gets_401() -> None:
    with pytest.raises(AuthenticationFailed):
        await _doctor_or_admin(_request(None))
    with pytest.raises(AuthenticationFailed):
        await _anyone_signed_in(_request(None))
    assert (await _anyone_signed_in(_request("patient"))).status == 204
