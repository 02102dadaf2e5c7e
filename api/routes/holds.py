"""/v1/slots/{id}/hold and /v1/holds: a slot kept for a patient while they decide."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request

from amrutam.scheduling.schemas import HoldOut
from api.contract import contract
from api.durable import finishes_if_disconnected
from api.guards import actor, require
from api.middleware import services
from api.responses import raw_json

bp = Blueprint("holds")


@bp.post("/v1/slots/<slot_id:uuid>/hold")
@contract(
    "Hold an open slot for a few minutes (a second hold with the same doctor replaces the first)",
    tag="appointments",
    ok=201,
    response=HoldOut,
    errors=(404, 409),
)
@require("patient")
@finishes_if_disconnected
async def hold(request: Request, slot_id: uuid.UUID) -> HTTPResponse:
    body = await services(request).holds.hold(actor(request), slot_id)
    return raw_json(body, 201)


@bp.delete("/v1/holds/<hold_id:uuid>")
@contract("Release a hold: the slot opens again", tag="appointments", ok=204, errors=(404,))
@require("patient")
async def release(request: Request, hold_id: uuid.UUID) -> HTTPResponse:
    await services(request).holds.release(actor(request), hold_id)
    return HTTPResponse(status=204)
