"""Scheduling over HTTP: /v1/appointments (book, list, read, cancel, reschedule) and a
doctor's slots under /v1/doctors (publish, list, delete)."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request

from amrutam.scheduling.schemas import (
    AppointmentOut,
    AppointmentPage,
    AppointmentQuery,
    BookingIn,
    ExplicitSlots,
    RescheduleIn,
    SlotList,
    SlotQuery,
    WeeklyRule,
)
from api.contract import contract
from api.durable import finishes_if_disconnected
from api.guards import actor, require
from api.middleware import services
from api.responses import raw_json
from api.validation import json_body, parse_body, parse_query, validate

bp = Blueprint("appointments", url_prefix="/v1/appointments")
slots = Blueprint("slots", url_prefix="/v1/doctors")
APPOINTMENT = {"application/json": AppointmentOut}


@bp.post("/book", ctx_idempotency="required")
@contract(
    "Book an open slot, or the slot of your hold (Idempotency-Key required)",
    tag="appointments",
    ok=201,
    body=BookingIn,
    response=AppointmentOut,
    errors=(404, 409),
)
@require("patient")
@finishes_if_disconnected
async def book(request: Request) -> HTTPResponse:
    data = parse_body(request, BookingIn)
    booking = await services(request).scheduling.book(
        actor(request),
        slot_id=data.slot_id,
        hold_id=data.hold_id,
        reason=data.reason,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    headers = {"Location": f"/v1/appointments/{booking.id}"}
    if not booking.created:
        headers["Idempotent-Replayed"] = "true"
    return raw_json(booking.body, 201, headers)


@bp.get("/")
@contract(
    "The caller's appointments (as patient or as doctor)",
    tag="appointments",
    query=AppointmentQuery,
    response=AppointmentPage,
)
@require("patient", "doctor")
async def list_appointments(request: Request) -> HTTPResponse:
    query = parse_query(request, AppointmentQuery)
    return raw_json(await services(request).scheduling.appointments(actor(request), query))


@bp.get("/<appointment_id:uuid>")
@contract("One appointment", tag="appointments", response=AppointmentOut)
@require()
async def get_appointment(request: Request, appointment_id: uuid.UUID) -> HTTPResponse:
    return raw_json(await services(request).scheduling.appointment(actor(request), appointment_id))


@bp.post("/<appointment_id:uuid>/cancel")
@contract(
    "Cancel; the slot opens again", tag="appointments", response=AppointmentOut, errors=(404, 409)
)
@require("patient", "doctor")
@finishes_if_disconnected
async def cancel(request: Request, appointment_id: uuid.UUID) -> HTTPResponse:
    return raw_json(await services(request).scheduling.cancel(actor(request), appointment_id))


@bp.post("/<appointment_id:uuid>/reschedule")
@contract(
    "Move to another open slot of the same doctor, atomically",
    tag="appointments",
    body=RescheduleIn,
    response=AppointmentOut,
    errors=(404, 409),
)
@require("patient")
@finishes_if_disconnected
async def reschedule(request: Request, appointment_id: uuid.UUID) -> HTTPResponse:
    data = parse_body(request, RescheduleIn)
    body = await services(request).scheduling.reschedule(
        actor(request), appointment_id, data.slot_id
    )
    return raw_json(body)


@slots.post("/me/slots")
@contract(
    "Publish slots, explicitly or as a weekly rule",
    tag="doctors",
    ok=201,
    body=(ExplicitSlots, WeeklyRule),
    response=SlotList,
    errors=(409,),
)
@require("doctor")
async def publish_slots(request: Request) -> HTTPResponse:
    data = json_body(request)
    availability: ExplicitSlots | WeeklyRule
    if isinstance(data, dict) and "slots" in data:
        availability = validate(ExplicitSlots, data)
    else:
        availability = validate(WeeklyRule, data)
    body = await services(request).availability.publish(actor(request), availability)
    return raw_json(body, 201)


def _open_slots(request: Request) -> bool:
    """A listing of open slots (the default status): the same for whoever asks, and
    cached. The doctor's other views depend on the caller's session."""
    return request.get_args(keep_blank_values=True).getlist("status", ["open"]) == ["open"]


@slots.get("/<doctor_id:uuid>/slots")
@contract(
    "A doctor's slots (the open ones cached until the next change)",
    tag="doctors",
    query=SlotQuery,
    response=SlotList,
    errors=(403,),
    cached=_open_slots,
)
async def list_slots(request: Request, doctor_id: uuid.UUID) -> HTTPResponse:
    query = parse_query(request, SlotQuery)
    viewer = getattr(request.ctx, "principal", None)
    return raw_json(await services(request).availability.list_slots(doctor_id, query, viewer))


@slots.delete("/me/slots/<slot_id:uuid>")
@contract("Delete an open slot", tag="doctors", ok=204, errors=(404, 409))
@require("doctor")
async def delete_slot(request: Request, slot_id: uuid.UUID) -> HTTPResponse:
    await services(request).availability.delete_slot(actor(request), slot_id)
    return HTTPResponse(status=204)
