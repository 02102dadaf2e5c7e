"""What /fhir/R4 serves, described by the handlers themselves: each is marked with its
``Interaction`` (resource type, read or search, the search parameters), and
``capability`` builds the CapabilityStatement from the routed handlers' marks, so it
lists exactly what is served."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sanic import HTTPResponse, Sanic

from api.fhir.resources import Resource
from api.fhir.search import Param

Handler = Callable[..., Awaitable[HTTPResponse]]


@dataclass(frozen=True)
class Interaction:
    resource: str
    kind: Literal["read", "search-type"]
    params: Mapping[str, Param] = field(default_factory=dict)
    cached: bool = False  # answered from the /v1 cache: the rate-limit hit rides on it


def interaction(
    resource: str,
    kind: Literal["read", "search-type"],
    params: Mapping[str, Param] | None = None,
    *,
    cached: bool = False,
) -> Callable[[Handler], Handler]:
    def mark(handler: Handler) -> Handler:
        handler.__dict__["fhir"] = Interaction(resource, kind, params or {}, cached)
        return handler

    return mark


def capability(app: Sanic[Any, Any], version: str) -> bytes:
    """What the router serves under /fhir/R4, as a CapabilityStatement."""
    by_type: dict[str, list[Interaction]] = {}
    for route in app.router.routes:
        mark: Interaction | None = getattr(route.handler, "fhir", None)
        if mark is not None:
            by_type.setdefault(mark.resource, []).append(mark)
    described = []
    for kind in sorted(by_type):
        marks = by_type[kind]
        entry: Resource = {
            "type": kind,
            "interaction": [{"code": m.kind} for m in sorted(marks, key=lambda m: m.kind)],
            "versioning": "no-version",
            "readHistory": False,
            "updateCreate": False,
        }
        params = {name: p for m in marks for name, p in m.params.items()}
        if params:
            entry["searchParam"] = [
                {"name": name, "type": p.kind, "documentation": p.doc}
                for name, p in sorted(params.items())
            ]
        described.append(entry)
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(UTC).isoformat(),
        "publisher": "Amrutam",
        "kind": "instance",
        "software": {"name": "Amrutam", "version": version},
        "implementation": {"description": "Amrutam FHIR R4 read facade"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Searches page with _count (at most 100) and the next link.",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer access tokens from POST /v1/auth/login, as /v1.",
                },
                "resource": described,
            }
        ],
    }
    return orjson.dumps(statement)
