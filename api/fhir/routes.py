"""/fhir/R4 routes: reads and searches through the ``/v1`` use cases.

Each handler is marked with its ``Interaction`` (capability.py), from which the
CapabilityStatement is built. Reads of the public directory (Practitioner,
PractitionerRole, Schedule) come from the same Redis entries as ``/v1/doctors`` and
are invalidated by the same writes.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

import orjson
from sanic import Blueprint, HTTPResponse, Request

from amrutam.audit.schemas import AuditQuery
from amrutam.consultations.schemas import PageQuery
from amrutam.doctors.schemas import SearchQuery
from amrutam.errors import NotFound
from amrutam.scheduling.schemas import AppointmentQuery, SlotQuery
from api.fhir import resources
from api.fhir.capability import interaction
from api.fhir.outcome import BASE
from api.fhir.responses import (
    answer,
    bounds,
    bundle,
    json_response,
    known_id,
    read_resource,
    representation,
)
from api.fhir.search import Param, Query, read
from api.guards import actor, require
from api.middleware import services
from api.problems import BadRequest
from api.validation import validate

bp = Blueprint("fhir", url_prefix=BASE)


# -- the directory: Practitioner, PractitionerRole, Schedule -------------------------

PRACTITIONER = Param("reference", "The practitioner (doctor)", "Practitioner")
SPECIALTY = Param("token", "The doctor's specialty (one code)")
DIRECTORY_PARAMS = {"practitioner": PRACTITIONER, "specialty": SPECIALTY}
SCHEDULE_PARAMS = {
    "actor": Param("reference", "The practitioner whose schedule", "Practitioner"),
    "specialty": SPECIALTY,
}


async def _doctors(
    request: Request, query: Query, doctor_id: uuid.UUID | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Profiles matching the directory parameters, one page (and the next cursor)."""
    code = None
    if query.get("specialty") is not None:
        system, codes = query.get("specialty")
        if system not in (None, "", resources.SPECIALTY_SYSTEM):
            return [], None
        if len(codes) > 1:
            raise BadRequest("specialty takes one code")
        code = codes[0]
    search = validate(
        SearchQuery, {"specialty": code, "limit": query.count, "cursor": query.cursor}
    )
    if doctor_id is not None:
        try:
            profile = orjson.loads(await services(request).doctors.profile(doctor_id))
        except NotFound:
            return [], None
        same = search.specialty in (None, profile["specialty"])
        return ([profile] if same else []), None
    page = orjson.loads(await services(request).doctors.search(search))
    return page["items"], page["next_cursor"]


_DIRECTORY = {
    "Practitioner": resources.practitioner,
    "PractitionerRole": resources.practitioner_role,
    "Schedule": resources.schedule,
}


@lru_cache(maxsize=4096)
def _directory(kind: str, profile: bytes) -> tuple[bytes, dict[str, str]]:
    """A doctor's resource from the profile's cached JSON. Keyed by that JSON itself: a
    changed profile is another entry, so invalidation stays the profile cache's."""
    return representation(_DIRECTORY[kind](orjson.loads(profile)))


async def _directory_read(request: Request, kind: str, id_: str) -> HTTPResponse:
    profile = await services(request).doctors.profile(known_id(id_, kind))
    return answer(request, *_directory(kind, profile))


@bp.get("/Practitioner/<id_:str>")
@interaction("Practitioner", "read", cached=True)
async def read_practitioner(request: Request, id_: str) -> HTTPResponse:
    return await _directory_read(request, "Practitioner", id_)


@bp.get("/PractitionerRole/<id_:str>")
@interaction("PractitionerRole", "read", cached=True)
async def read_practitioner_role(request: Request, id_: str) -> HTTPResponse:
    return await _directory_read(request, "PractitionerRole", id_)


@bp.get("/PractitionerRole")
@interaction("PractitionerRole", "search-type", DIRECTORY_PARAMS, cached=True)
async def search_practitioner_roles(request: Request) -> HTTPResponse:
    query = read(request, DIRECTORY_PARAMS)
    profiles, next_cursor = await _doctors(request, query, query.get("practitioner"))
    return bundle(request, query, [resources.practitioner_role(p) for p in profiles], next_cursor)


@bp.get("/Schedule/<id_:str>")
@interaction("Schedule", "read", cached=True)
async def read_schedule(request: Request, id_: str) -> HTTPResponse:
    return await _directory_read(request, "Schedule", id_)


@bp.get("/Schedule")
@interaction("Schedule", "search-type", SCHEDULE_PARAMS, cached=True)
async def search_schedules(request: Request) -> HTTPResponse:
    query = read(request, SCHEDULE_PARAMS)
    profiles, next_cursor = await _doctors(request, query, query.get("actor"))
    return bundle(request, query, [resources.schedule(p) for p in profiles], next_cursor)


# -- Slot --------------------------------------------------------------------------

SLOT_PARAMS = {
    "schedule": Param("reference", "The schedule (required): Schedule/<doctor id>", "Schedule"),
    "status": Param("token", "free, busy-tentative (held), busy (booked), busy-unavailable"),
    "start": Param(
        "date", "When the slot starts (ge, gt, le, lt, eq; twice for a window)", None, True
    ),
}
_SLOT_STATUSES = {fhir: ours for ours, fhir in resources.SLOT_STATUS.items()}


@bp.get("/Slot")
@interaction("Slot", "search-type", SLOT_PARAMS)
async def search_slots(request: Request) -> HTTPResponse:
    """Without ``status``: every slot for its doctor, the free ones for anyone else
    (as ``/v1``: only the doctor sees booked and held slots). The free ones come from
    ``/v1``'s cached listing, invalidated by the same writes."""
    query = read(request, SLOT_PARAMS)
    doctor_id = query.get("schedule")
    if doctor_id is None:
        raise BadRequest("name the schedule: Slot?schedule=Schedule/<id>")
    viewer = getattr(request.ctx, "principal", None)
    statuses: tuple[str, ...] | None
    if query.get("status") is not None:
        statuses = tuple(_SLOT_STATUSES[c] for c in query.get("status")[1] if c in _SLOT_STATUSES)
        if not statuses:
            return bundle(request, query, [], None)
    else:
        statuses = None if viewer is not None and viewer.user_id == doctor_id else ("open",)
    window = bounds(query, "start")
    availability = services(request).availability
    if statuses == ("open",):  # the public listing, from the same cache entries as /v1's
        listing = validate(
            SlotQuery,
            {
                "from": window.lower,
                "to": window.upper,
                "limit": query.count,
                "cursor": query.cursor,
            },
        )
        page = orjson.loads(await availability.list_slots(doctor_id, listing, viewer))
    else:
        page = await availability.slots(
            doctor_id, statuses, window.lower, window.upper, query.cursor, query.count, viewer
        )
    found = [resources.slot(row) for row in page["items"]]
    return bundle(request, query, found, page["next_cursor"])


# -- Appointment, Encounter, MedicationRequest ----------------------------------------

APPOINTMENT_PARAMS = {
    "patient": Param("reference", "The patient", "Patient"),
    "practitioner": PRACTITIONER,
    "date": Param("date", "When the appointment starts", None, True),
    "status": Param("token", "booked, cancelled, fulfilled or noshow (one code)"),
}
_APPOINTMENT_STATUSES = {fhir: ours for ours, fhir in resources.APPOINTMENT_STATUS.items()}
MEDICATION_REQUEST_PARAMS = {"patient": Param("reference", "The patient", "Patient")}


@bp.get("/Appointment/<id_:str>")
@interaction("Appointment", "read")
@require()
async def read_appointment(request: Request, id_: str) -> HTTPResponse:
    body = await services(request).scheduling.appointment(
        actor(request), known_id(id_, "appointment")
    )
    return read_resource(request, resources.appointment(orjson.loads(body)))


@bp.get("/Appointment")
@interaction("Appointment", "search-type", APPOINTMENT_PARAMS)
@require()
async def search_appointments(request: Request) -> HTTPResponse:
    query = read(request, APPOINTMENT_PARAMS)
    status = None
    if query.get("status") is not None:
        codes = query.get("status")[1]
        if len(codes) > 1:
            raise BadRequest("status takes one code")
        if codes[0] not in _APPOINTMENT_STATUSES:
            return bundle(request, query, [], None)
        status = _APPOINTMENT_STATUSES[codes[0]]
    window = bounds(query, "date")
    listing = validate(
        AppointmentQuery,
        {
            "status": status,
            "from": window.lower,
            "to": window.upper,
            "limit": query.count,
            "cursor": query.cursor,
        },
    )
    body = await services(request).scheduling.appointments(
        actor(request),
        listing,
        patient_id=query.get("patient"),
        doctor_id=query.get("practitioner"),
    )
    page = orjson.loads(body)
    found = [resources.appointment(row) for row in page["items"]]
    return bundle(request, query, found, page["next_cursor"])


@bp.get("/Encounter/<id_:str>")
@interaction("Encounter", "read")
@require()
async def read_encounter(request: Request, id_: str) -> HTTPResponse:
    body = await services(request).consultations.get(actor(request), known_id(id_, "encounter"))
    return read_resource(request, resources.encounter(orjson.loads(body)))


@bp.get("/MedicationRequest/<id_:str>")
@interaction("MedicationRequest", "read")
@require()
async def read_medication_request(request: Request, id_: str) -> HTTPResponse:
    named = resources.parse_medication_request_id(id_)
    if named is None:
        raise NotFound("no such medication request")
    prescription_id, n = named
    body = await services(request).consultations.prescription(actor(request), prescription_id)
    prescription = orjson.loads(body)
    if n > len(prescription["items"]):
        raise NotFound("no such medication request")
    item = prescription["items"][n - 1]
    return read_resource(request, resources.medication_request(prescription, item, n))


@bp.get("/MedicationRequest")
@interaction("MedicationRequest", "search-type", MEDICATION_REQUEST_PARAMS)
@require()
async def search_medication_requests(request: Request) -> HTTPResponse:
    query = read(request, MEDICATION_REQUEST_PARAMS)
    paging = validate(PageQuery, {"limit": query.count, "cursor": query.cursor})
    body = await services(request).consultations.prescription_items(
        actor(request), query.get("patient"), paging
    )
    page = orjson.loads(body)
    found = [resources.medication_request(row, row["item"], row["n"]) for row in page["items"]]
    return bundle(request, query, found, page["next_cursor"])


# -- AuditEvent (admins) -------------------------------------------------------------

AUDIT_PARAMS = {
    "date": Param("date", "When it was recorded", None, True),
    "agent": Param("reference", "Who did it: Practitioner/<id>, Patient/<id> or <id>"),
    "entity": Param(
        "reference", "What it touched: Appointment/<id>, Encounter/<id>, ...", typed=True
    ),
}
# A reference's type as the audit trail names the entity.
_ENTITY_TYPES = {
    **{fhir: ours for ours, fhir in resources.ENTITY_TYPES.items()},
    "MedicationRequest": "prescription",
}


@bp.get("/AuditEvent")
@interaction("AuditEvent", "search-type", AUDIT_PARAMS)
@require("admin")
async def search_audit_events(request: Request) -> HTTPResponse:
    query = read(request, AUDIT_PARAMS)
    entity_type = entity_id = None
    if query.get("entity") is not None:
        kind, entity_id = query.get("entity")
        if kind not in _ENTITY_TYPES:
            raise BadRequest(f"entity: the types are {', '.join(sorted(_ENTITY_TYPES))}")
        entity_type = _ENTITY_TYPES[kind]
        if kind == "MedicationRequest":
            named = resources.parse_medication_request_id(entity_id)
            entity_id = str(named[0]) if named else entity_id
    window = bounds(query, "date")
    search = validate(
        AuditQuery,
        {
            "actor_id": query.get("agent"),
            "entity_type": entity_type,
            "entity_id": entity_id,
            "from": window.lower,
            "to": window.upper,
            "limit": query.count,
            "cursor": query.cursor,
        },
    )
    page = orjson.loads(await services(request).audit.search(actor(request), search))
    found = [resources.audit_event(row) for row in page["items"]]
    return bundle(request, query, found, page["next_cursor"])


@bp.get("/metadata")
async def metadata(request: Request) -> HTTPResponse:
    return json_response(request.app.ctx.fhir_capability)
