"""/v1/appointments: book, list, read, cancel, reschedule."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request
from sanic_ext import openapi

from amrutam.scheduling.schemas import (
    AppointmentOut,
    AppointmentPage,
    AppointmentQuery,
    BookingIn,
    RescheduleIn,
)
from api.durable import finishes_if_disconnected
from api.guards import BEARER, actor, require
from api.middleware import services
from api.responses import raw_json
from api.validation import parse_body, parse_query

bp = Blueprint("appointments", url_prefix="/v1/appointments")
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
        data.slot_id,
        data.reason,
        request.headers.get("idempotency-key"),
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
