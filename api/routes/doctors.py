"""/v1/doctors: profiles, search and availability."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request
from sanic_ext import openapi

from amrutam.doctors.schemas import ProfileIn, ProfileOut, ProfilePage, SearchQuery
from amrutam.errors import FieldError, InvalidInput
from amrutam.scheduling.rules import expand_weekly
from amrutam.scheduling.schemas import (
    MAX_SLOTS_PER_REQUEST,
    ExplicitSlots,
    SlotList,
    SlotQuery,
    WeeklyRule,
)
from api.guards import BEARER, actor, principal, require
from api.middleware import services
from api.responses import raw_json
from api.validation import json_body, parse_query, validate

bp = Blueprint("doctors", url_prefix="/v1/doctors")


@bp.put("/me/profile")
@openapi.definition(
    summary="Create or update the caller's doctor profile",
    tag="doctors",
    secured=BEARER,
    body={"application/json": ProfileIn},
    response={"application/json": ProfileOut},
)
@require("doctor")
async def put_profile(request: Request) -> HTTPResponse:
    data = validate(ProfileIn, json_body(request))
    who = principal(request)
    body = await services(request).doctors.upsert_profile(actor(request), who.user_id, data)
    return raw_json(body)


@bp.get("/")
@openapi.definition(
    summary="Search doctors (cached 5 minutes)",
    tag="doctors",
    response={"application/json": ProfilePage},
)
@openapi.parameter("specialty", str)
@openapi.parameter("language", str)
@openapi.parameter("city", str)
@openapi.parameter("min_fee", int)
@openapi.parameter("max_fee", int)
@openapi.parameter("min_rating", float)
@openapi.parameter("available_on", str, description="YYYY-MM-DD, in each doctor's time zone")
@openapi.parameter("q", str, description="text in the name or specialty")
@openapi.parameter("sort", str, description="fee, -fee, rating, -rating, experience, -experience")
@openapi.parameter("limit", int)
@openapi.parameter("cursor", str)
async def search(request: Request) -> HTTPResponse:
    query = parse_query(request, SearchQuery)
    return raw_json(await services(request).doctors.search(query))


@bp.get("/<doctor_id:uuid>")
@openapi.definition(
    summary="A doctor's profile (cached 1 hour, invalidated on change)",
    tag="doctors",
    response={"application/json": ProfileOut},
)
async def get_profile(request: Request, doctor_id: uuid.UUID) -> HTTPResponse:
    return raw_json(await services(request).doctors.profile(doctor_id))


@bp.post("/me/slots")
@openapi.definition(
    summary="Publish slots, explicitly or as a weekly rule",
    tag="doctors",
    secured=BEARER,
    body={"application/json": ExplicitSlots | WeeklyRule},
    response={"application/json": SlotList},
)
@require("doctor")
async def create_slots(request: Request) -> HTTPResponse:
    data = json_body(request)
    if isinstance(data, dict) and "slots" in data:
        times = [(s.starts_at, s.ends_at) for s in validate(ExplicitSlots, data).slots]
    else:
        rule = validate(WeeklyRule, data)
        times = list(
            expand_weekly(
                rule.from_date,
                rule.to_date,
                set(rule.weekdays),
                rule.start_time,
                rule.end_time,
                rule.slot_minutes,
                rule.timezone,
            )
        )
        if len(times) > MAX_SLOTS_PER_REQUEST:
            raise InvalidInput(
                "the rule makes too many slots",
                [FieldError("to_date", f"at most {MAX_SLOTS_PER_REQUEST} slots per request")],
            )
        if not times:
            raise InvalidInput("the rule makes no slots", [FieldError("weekdays", "no slot fits")])
    body = await services(request).scheduling.create_slots(
        actor(request), principal(request).user_id, times
    )
    return raw_json(body, 201)


@bp.get("/<doctor_id:uuid>/slots")
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
    return raw_json(await services(request).scheduling.list_slots(doctor_id, query, viewer))


@bp.delete("/me/slots/<slot_id:uuid>")
@openapi.definition(summary="Delete an open slot", tag="doctors", secured=BEARER)
@require("doctor")
async def delete_slot(request: Request, slot_id: uuid.UUID) -> HTTPResponse:
    await services(request).scheduling.delete_slot(actor(request), slot_id)
    return HTTPResponse(status=204)
