"""/v1/slots/{id}/hold, /v1/holds and the waitlist: a slot kept for a patient while they
decide, and a line for the slots that open."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request

from amrutam.scheduling.schemas import HoldOut, WaitlistEntryOut, WaitlistIn, WaitlistPage
from api.contract import contract
from api.durable import finishes_if_disconnected
from api.guards import actor, require
from api.middleware import services
from api.responses import raw_json
from api.validation import parse_body

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


@bp.post("/v1/doctors/<doctor_id:uuid>/waitlist")
@contract(
    "Wait in line for a doctor's date (optionally a time window): the next matching slot "
    "that opens is held for you",
    tag="appointments",
    ok=201,
    body=WaitlistIn,
    response=WaitlistEntryOut,
    errors=(404, 409),
)
@require("patient")
async def join_waitlist(request: Request, doctor_id: uuid.UUID) -> HTTPResponse:
    data = parse_body(request, WaitlistIn)
    body = await services(request).waitlist.join(actor(request), doctor_id, data)
    return raw_json(body, 201)


@bp.get("/v1/waitlist")
@contract(
    "The caller's places in line, with their offers", tag="appointments", response=WaitlistPage
)
@require("patient")
async def my_waitlist(request: Request) -> HTTPResponse:
    return raw_json(await services(request).waitlist.entries(actor(request)))


@bp.delete("/v1/waitlist/<entry_id:uuid>")
@contract(
    "Leave the line (an offer not taken passes on)", tag="appointments", ok=204, errors=(404,)
)
@require("patient")
async def leave_waitlist(request: Request, entry_id: uuid.UUID) -> HTTPResponse:
    await services(request).waitlist.leave(actor(request), entry_id)
    return HTTPResponse(status=204)
