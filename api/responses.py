"""JSON responses from models and plain data."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from sanic import HTTPResponse
from sanic.response.types import HEADER_TRANSLATION_TABLE


class JsonResponse(HTTPResponse):
    """Sanic's response with a cheaper header check: Sanic strips CR, LF and NUL from
    every header name and value with ``str.translate``, 23 µs for our seven headers (5 %
    of a cached read); looking for them first costs 2.5 µs and strips the same."""

    __slots__ = ()

    @staticmethod
    def _sanitize_header_value(value: str) -> str:
        if "\r" in value or "\n" in value or "\x00" in value:
            return value.translate(HEADER_TRANSLATION_TABLE)
        return value


def json_response(
    data: BaseModel | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> HTTPResponse:
    body = data.model_dump_json() if isinstance(data, BaseModel) else orjson.dumps(data)
    return JsonResponse(body, status=status, headers=headers, content_type="application/json")


def raw_json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    """A body that is already JSON (from the cache or the database layer)."""
    return JsonResponse(body, status=status, headers=headers, content_type="application/json")
