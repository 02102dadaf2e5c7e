"""The OpenAPI 3.1 document, built from the routes themselves.

Schemas come from the pydantic models the routes validate and answer with (so required
fields, formats, enums and ``additionalProperties: false`` are the ones enforced), and
each operation lists every status it can answer: its success, the errors its use case
declares, and those the middleware gives any route of its kind (401/403 from the
guards, 400/413/422 for bodies, 409/422 for Idempotency-Key reuse, 429 from the rate
limits, 503 when a backing service is down). Errors are RFC 9457 problem+json.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from sanic import Sanic

from api.contract import Contract

REF = "#/components/schemas/{model}"
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": REF.format(model="Problem")}}}
PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail", "instance", "request_id"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": ["string", "null"]},
        "request_id": {"type": ["string", "null"]},
        "errors": {
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
IDEMPOTENCY_KEY = {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"}
_PARAM = re.compile(r"<(\w+)(?::(\w+))?>")
_PARAM_SCHEMAS = {"uuid": {"type": "string", "format": "uuid"}}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    503: {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
}


def document(app: Sanic[Any, Any], title: str, version: str, description: str) -> dict[str, Any]:
    routes = [
        (route, method, route.handler.contract)
        for route in app.router.routes
        if isinstance(getattr(route.handler, "contract", None), Contract)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"})
    ]
    models: list[tuple[type[BaseModel], Any]] = []
    for _, _, c in routes:
        models += [(m, "validation") for m in c.body]
        if c.query is not None:
            models.append((c.query, "validation"))
        if c.response is not None:
            models.append((c.response, "serialization"))
    refs, schemas = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    components = {**schemas.get("$defs", {}), "Problem": PROBLEM}
    paths: dict[str, dict[str, Any]] = {}
    for route, method, c in routes:
        path = "/" + _PARAM.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[method.lower()] = _operation(route, method, c, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _operation(route: Any, method: str, c: Contract, refs: dict[Any, Any]) -> dict[str, Any]:
    roles: tuple[str, ...] | None = getattr(route.handler, "roles", None)
    idempotency = getattr(route.ctx, "idempotency", None)
    keyed = method in ("POST", "PUT", "PATCH")
    params: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _PARAM_SCHEMAS.get(kind or "", {"type": "string"}),
        }
        for name, kind in _PARAM.findall(route.path)
    ]
    statuses = {429, 503, *c.errors}
    if params:
        statuses.add(404)  # a path parameter of the wrong form matches no route
    if c.query is not None:
        params += _query_parameters(c.query)
        statuses.add(422)
    if keyed:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": idempotency == "required",
                "schema": IDEMPOTENCY_KEY,
                "description": "Same key, caller and body within 24 h: the first answer again",
            }
        )
        statuses |= {400, 409, 422}
    operation: dict[str, Any] = {
        "summary": c.summary,
        "tags": [c.tag],
        "operationId": route.name.removeprefix(route.name.split(".")[0] + "."),
        "parameters": params,
    }
    if c.body:
        schemas = [refs[(m, "validation")] for m in c.body]
        schema = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
        statuses |= {400, 413, 422}
    if roles is not None:
        operation["security"] = [{"bearer": []}]
        statuses.add(401)
        if roles:
            statuses.add(403)
    ok: dict[str, Any] = {"description": HTTPStatus(c.ok).phrase}
    if c.response is not None:
        ok["content"] = {"application/json": {"schema": refs[(c.response, "serialization")]}}
    responses: dict[str, Any] = {str(c.ok): ok}
    for status in sorted(statuses):
        answer: dict[str, Any] = {
            "description": HTTPStatus(status).phrase,
            "content": PROBLEM_CONTENT,
        }
        if status in _HEADERS:
            answer["headers"] = _HEADERS[status]
        responses[str(status)] = answer
    operation["responses"] = responses
    return operation


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation", ref_template=REF)
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]
