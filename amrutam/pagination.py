"""Opaque keyset cursors: the last row's sort values, base64url-encoded JSON."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from amrutam.errors import FieldError, InvalidInput

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str, length: int) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise invalid_cursor() from exc
    if not isinstance(values, list) or len(values) != length:
        raise invalid_cursor()
    return values


def invalid_cursor() -> InvalidInput:
    return InvalidInput("the cursor is not valid", [FieldError("cursor", "not a cursor we issued")])
