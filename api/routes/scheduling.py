"""Scheduling over HTTP: /v1/appointments (book, list, read, cancel, reschedule) and a
doctor's slots under /v1/doctors (publish, list, delete)."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request
from sanic_ext import openapi

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
from api.durable import finishes_if_disconnected
from api.guards import BEARER, actor, require
from api.middleware import services
from api.responses import raw_json
from api.validation import json_body, parse_body, parse_query, validate

bp = Blueprint("appointments", url_prefix="/v1/appointments")
slots = Blueprint("slots", url_prefix="/v1/doctors")
APPOINTMENT = {"application/json": AppointmentOut}


@bp.post("/book", ctx_idempotency="required")
@openapi.definition(
    summary="Book an open slot (Idempotency-Key required)",
    tag="appointments",
    secured=BEARER,
    body={"application/json": BookingIn},
    response=APPOINTMENT,
)
@openapi.parameter("Idempotency-Key", str, location="header", required=True)
@require("patient")
@finishes_if_disconnected
async def book(request: Request) -> HTTPResponse:
    data = parse_body(request, BookingIn)
    booking = await services(request).scheduling.book(
        actor(request),
        slot_id=data.slot_id,
        reason=data.reason,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    headers = {"Location": f"/v1/appointments/{booking.id}"}
    if not booking.created:
        headers["Idempotent-Replayed"] = "true"
    return raw_json(booking.body, 201, headers)


@bp.get("/")
@openapi.definition(
    summary="The caller's appointments (as patient or as doctor)",
    tag="appointments",
    secured=BEARER,
    response={"application/json": AppointmentPage},
)
@openapi.parameter("status", str)
@openapi.parameter("from", str)
@openapi.parameter("to", str)
@openapi.parameter("limit", int)
@openapi.parameter("cursor", str)
@require("patient", "doctor")
async def list_appointments(request: Request) -> HTTPResponse:
    query = parse_query(request, AppointmentQuery)
    return raw_json(await services(request).scheduling.appointments(actor(request), query))


@bp.get("/<appointment_id:uuid>")
@openapi.definition(
    summary="One appointment", tag="appointments", secured=BEARER, response=APPOINTMENT
)
@require()
async def get_appointment(request: Request, appointment_id: uuid.UUID) -> HTTPResponse:
    return raw_json(await services(request).scheduling.appointment(actor(request), appointment_id))


@bp.post("/<appointment_id:uuid>/cancel")
@openapi.definition(
    summary="Cancel; the slot opens again", tag="appointments", secured=BEARER, response=APPOINTMENT
)
@require("patient", "doctor")
@finishes_if_disconnected
async def cancel(request: Request, appointment_id: uuid.UUID) -> HTTPResponse:
    return raw_json(await services(request).scheduling.cancel(actor(request), appointment_id))


@bp.post("/<appointment_id:uuid>/reschedule")
@openapi.definition(
    summary="Move to another open slot of the same doctor, atomically",
    tag="appointments",
    secured=BEARER,
    body={"application/json": RescheduleIn},
    response=APPOINTMENT,
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
@openapi.definition(
    summary="Publish slots, explicitly or as a weekly rule",
    tag="doctors",
    secured=BEARER,
    body={"application/json": ExplicitSlots | WeeklyRule},
    response={"application/json": SlotList},
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


@slots.get("/<doctor_id:uuid>/slots")
@openapi.definition(
    summary="A doctor's slots", tag="doctors", response={"application/json": SlotList}
)
@openapi.parameter("from", str, description="RFC 3339; default now")
@openapi.parameter("to", str)
@openapi.parameter("status", str, description="open (default); booked or all for the owner")
@openapi.parameter("limit", int)
@openapi.parameter("cursor", str)
async def list_slots(request: Request, doctor_id: uuid.UUID) -> HTTPResponse:
    query = parse_query(request, SlotQuery)
    viewer = getattr(request.ctx, "principal", None)
    return raw_json(await services(request).availability.list_slots(doctor_id, query, viewer))


@slots.delete("/me/slots/<slot_id:uuid>")
@openapi.definition(summary="Delete an open slot", tag="doctors", secured=BEARER)
@require("doctor")
async def delete_slot(request: Request, slot_id: uuid.UUID) -> HTTPResponse:
    await services(request).availability.delete_slot(actor(request), slot_id)
    return HTTPResponse(status=204)
