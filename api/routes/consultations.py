"""The visit: /v1/appointments/{id}/consultation, /v1/consultations, /v1/prescriptions."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request

from amrutam.consultations.schemas import (
    CompleteIn,
    ConsultationOut,
    PageQuery,
    PrescriptionIn,
    PrescriptionOut,
    PrescriptionPage,
)
from api.contract import contract
from api.durable import finishes_if_disconnected
from api.guards import actor, require
from api.middleware import services
from api.responses import raw_json
from api.validation import parse_body, parse_query

bp = Blueprint("consultations")
CONSULTATION = {"application/json": ConsultationOut}
PRESCRIPTION = {"application/json": PrescriptionOut}


@bp.post("/v1/appointments/<appointment_id:uuid>/consultation")
@contract(
    "Start the consultation (the appointment's doctor)",
    tag="consultations",
    ok=201,
    response=ConsultationOut,
    errors=(404, 409),
)
@require("doctor")
@finishes_if_disconnected
async def start(request: Request, appointment_id: uuid.UUID) -> HTTPResponse:
    body = await services(request).consultations.start(actor(request), appointment_id)
    return raw_json(body, 201)


@bp.post("/v1/consultations/<consultation_id:uuid>/complete")
@contract(
    "Complete it with notes; the appointment becomes completed",
    tag="consultations",
    body=CompleteIn,
    response=ConsultationOut,
    errors=(404, 409),
)
@require("doctor")
@finishes_if_disconnected
async def complete(request: Request, consultation_id: uuid.UUID) -> HTTPResponse:
    data = parse_body(request, CompleteIn)
    body = await services(request).consultations.complete(actor(request), consultation_id, data)
    return raw_json(body)


@bp.get("/v1/consultations/<consultation_id:uuid>")
@contract(
    "A consultation (its patient, its doctor, admins)",
    tag="consultations",
    response=ConsultationOut,
)
@require()
async def get_consultation(request: Request, consultation_id: uuid.UUID) -> HTTPResponse:
    return raw_json(await services(request).consultations.get(actor(request), consultation_id))


@bp.post("/v1/consultations/<consultation_id:uuid>/prescriptions")
@contract(
    "Issue a prescription (the consultation's doctor)",
    tag="consultations",
    ok=201,
    body=PrescriptionIn,
    response=PrescriptionOut,
)
@require("doctor")
@finishes_if_disconnected
async def prescribe(request: Request, consultation_id: uuid.UUID) -> HTTPResponse:
    data = parse_body(request, PrescriptionIn)
    issued = await services(request).consultations.prescribe(
        actor(request),
        consultation_id,
        data,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    headers = {} if issued.created else {"Idempotent-Replayed": "true"}
    return raw_json(issued.body, 201, headers)


@bp.get("/v1/prescriptions/<prescription_id:uuid>")
@contract(
    "A prescription (its patient, its doctor, admins)",
    tag="consultations",
    response=PrescriptionOut,
)
@require()
async def get_prescription(request: Request, prescription_id: uuid.UUID) -> HTTPResponse:
    body = await services(request).consultations.prescription(actor(request), prescription_id)
    return raw_json(body)


@bp.get("/v1/patients/me/prescriptions")
@contract(
    "The caller's prescriptions, newest first",
    tag="consultations",
    query=PageQuery,
    response=PrescriptionPage,
)
@require("patient")
async def my_prescriptions(request: Request) -> HTTPResponse:
    query = parse_query(request, PageQuery)
    body = await services(request).consultations.patient_prescriptions(actor(request), query)
    return raw_json(body)
