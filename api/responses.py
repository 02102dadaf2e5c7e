"""JSON responses from models and plain data."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from sanic import HTTPResponse


def json_response(
    data: BaseModel | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> HTTPResponse:
    body = data.model_dump_json() if isinstance(data, BaseModel) else orjson.dumps(data)
    return HTTPResponse(body, status=status, headers=headers, content_type="application/json")


def raw_json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    """A body that is already JSON (from the cache or the database layer)."""
    return HTTPResponse(body, status=status, headers=headers, content_type="application/json")
