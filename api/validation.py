"""Turn request bodies and query strings into validated models, or a clear 4xx.

The one door every input passes: the models must be ``amrutam.inputs.Input`` subclasses
(the type bound below; mypy refuses any other), whose base checks (no NUL, dates in
range, no unknown field) every field inherits.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs

import orjson
from pydantic import ValidationError
from sanic import Request

from amrutam.errors import FieldError, InvalidInput
from amrutam.inputs import Input
from api.problems import BadRequest

M = TypeVar("M", bound=Input)


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
    """Query parameters; names in ``lists`` keep every value, others must come once.

    Blank values are kept (``limit=`` is an invalid limit, not a missing one). A frozen
    model is parsed once per distinct query string and shared (the hot cached reads).
    """
    if model.model_config.get("frozen"):
        return cast(M, _parse_shared(model, request.query_string, lists))
    return _parse(model, request.get_args(keep_blank_values=True), lists)


@lru_cache(maxsize=4096)
def _parse_shared(model: type[M], query_string: str, lists: frozenset[str]) -> M:
    return _parse(model, parse_qs(query_string, keep_blank_values=True), lists)


def _parse(model: type[M], args: Mapping[str, list[str]], lists: frozenset[str]) -> M:
    repeated = [key for key, values in args.items() if len(values) > 1 and key not in lists]
    if repeated:
        raise InvalidInput(
            "the query string is invalid",
            [FieldError(key, "give this parameter once") for key in sorted(repeated)],
        )
    data = {key: (values if key in lists else values[0]) for key, values in args.items()}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("the query string is invalid", _field_errors(exc)) from exc
