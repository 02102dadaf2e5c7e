"""Turn request bodies and query strings into validated models, or a clear 4xx."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from sanic import Request

from amrutam.errors import FieldError, InvalidInput
from api.problems import BadRequest

M = TypeVar("M", bound=BaseModel)


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(p) for p in err["loc"]) or "body", err["msg"])
        for err in exc.errors(include_url=False)
    ]


def json_body(request: Request) -> Any:
    if not request.body:
        raise BadRequest("a JSON body is required")
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the request body is not valid JSON") from exc


def parse_body(request: Request, model: type[M]) -> M:
    return validate(model, json_body(request))


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("the request body is invalid", _field_errors(exc)) from exc


def parse_query(request: Request, model: type[M], lists: frozenset[str] = frozenset()) -> M:
    """Query parameters; names in ``lists`` keep every value, others the last one."""
    data = {key: (values if key in lists else values[-1]) for key, values in request.args.items()}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("the query string is invalid", _field_errors(exc)) from exc
