"""/fhir/R4 answers: a resource with its validators (ETag, Last-Modified, 304 on
If-None-Match), a searchset Bundle, and the identifier and range helpers of the routes."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime

from sanic import HTTPResponse, Request

from amrutam.errors import NotFound
from amrutam.jsonutil import dumps
from api.fhir import resources
from api.fhir.outcome import CONTENT_TYPE
from api.fhir.resources import Resource
from api.fhir.search import Query, Range, base_url, next_link, self_link


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> HTTPResponse:
    return HTTPResponse(body, status=status, headers=headers, content_type=CONTENT_TYPE)


def representation(resource: Resource) -> tuple[bytes, dict[str, str]]:
    """A resource's body and validators: a weak ETag of its content, and Last-Modified
    where the record has a time of change."""
    body = dumps(resource)
    headers = {"ETag": f'W/"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'}
    updated = (resource.get("meta") or {}).get("lastUpdated")
    if updated:
        instant = datetime.fromisoformat(updated).astimezone(UTC)
        headers["Last-Modified"] = format_datetime(instant, usegmt=True)
    return body, headers


def answer(request: Request, body: bytes, headers: dict[str, str]) -> HTTPResponse:
    """One resource; ``If-None-Match`` with its ETag gets 304."""
    if headers["ETag"] in request.headers.get("if-none-match", ""):
        return HTTPResponse(status=304, headers=dict(headers))
    return json_response(body, headers=dict(headers))


def read_resource(request: Request, resource: Resource) -> HTTPResponse:
    return answer(request, *representation(resource))


def bundle(
    request: Request, query: Query, found: list[Resource], next_cursor: str | None
) -> HTTPResponse:
    """A searchset; ``total`` when the whole result is on this first page."""
    base = base_url(request)
    links = [{"relation": "self", "url": self_link(request)}]
    if next_cursor:
        links.append({"relation": "next", "url": next_link(request, next_cursor)})
    bundle: Resource = {"resourceType": "Bundle", "type": "searchset"}
    if next_cursor is None and query.cursor is None:
        bundle["total"] = len(found)
    bundle["link"] = links
    # fullUrl is an absolute URL or nothing (FHIR R4 Bundle.entry.fullUrl).
    absolute = base.startswith(("http://", "https://"))
    bundle["entry"] = [
        {
            **({"fullUrl": f"{base}/{r['resourceType']}/{r['id']}"} if absolute else {}),
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in found
    ]
    return json_response(dumps(bundle))


def known_id(text: str, kind: str) -> uuid.UUID:
    found = resources.our_id(text)
    if found is None:
        raise NotFound(f"no such {kind}")
    return found


def bounds(query: Query, name: str) -> Range:
    found: Range | None = query.get(name)
    return found or Range()
