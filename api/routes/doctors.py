"""/v1/doctors: profiles and search (their slots are in ``scheduling``)."""

from __future__ import annotations

import uuid

from sanic import Blueprint, HTTPResponse, Request

from amrutam.doctors.schemas import ProfileIn, ProfileOut, ProfilePage, SearchQuery
from api.contract import contract
from api.guards import actor, principal, require
from api.middleware import services
from api.responses import raw_json
from api.validation import json_body, parse_query, validate

bp = Blueprint("doctors", url_prefix="/v1/doctors")


@bp.put("/me/profile")
@contract(
    "Create or update the caller's doctor profile",
    tag="doctors",
    body=ProfileIn,
    response=ProfileOut,
)
@require("doctor")
async def put_profile(request: Request) -> HTTPResponse:
    data = validate(ProfileIn, json_body(request))
    who = principal(request)
    body = await services(request).doctors.upsert_profile(actor(request), who.user_id, data)
    return raw_json(body)


@bp.get("/")
@contract(
    "Search doctors (cached 5 minutes)",
    tag="doctors",
    query=SearchQuery,
    response=ProfilePage,
    cached=True,
)
async def search(request: Request) -> HTTPResponse:
    query = parse_query(request, SearchQuery)
    return raw_json(await services(request).doctors.search(query))


@bp.get("/<doctor_id:uuid>")
@contract(
    "A doctor's profile (cached 1 hour, invalidated on change)",
    tag="doctors",
    response=ProfileOut,
    errors=(404,),
    cached=True,
)
async def get_profile(request: Request, doctor_id: uuid.UUID) -> HTTPResponse:
    return raw_json(await services(request).doctors.profile(doctor_id))
