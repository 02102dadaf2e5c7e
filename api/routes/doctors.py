"""/v1/doctors: profiles and search (their slots are in ``scheduling``)."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request
from sanic_ext import openapi

from amrutam.doctors.schemas import ProfileIn, ProfileOut, ProfilePage, SearchQuery
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
