"""Keyset pages over hand-written SQL, behind opaque cursors.

A cursor is the last row's sort value and id, base64url-encoded JSON. Every list goes
through :class:`Keyset`: it decodes and range-checks the cursor (a tampered one is a 422,
never a 500), writes the ``(column, id) > ($n, $m)`` condition and the ``ORDER BY ...
LIMIT`` (one row more than the page, to know whether another follows), and encodes the
next cursor from the page's last row.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from amrutam.errors import FieldError, InvalidInput

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

# What a cursor may carry: PostgreSQL's int4 and a range of instants both it and Python
# hold with room to spare (a value outside them is not one we issued).
INT4 = (-(2**31), 2**31 - 1)
EARLIEST, LATEST = datetime(1900, 1, 1).toordinal(), datetime(2200, 1, 1).toordinal()


class Params:
    """Bound parameters for hand-written SQL: ``p(value)`` appends it and returns ``$n``."""

    def __init__(self, *values: Any) -> None:
        self.values: list[Any] = list(values)

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


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


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None or not EARLIEST <= value.toordinal() < LATEST:
        raise ValueError(text)
    return value


def _int4(text: str) -> int:
    value = int(text)
    if not INT4[0] <= value <= INT4[1]:
        raise ValueError(text)
    return value


def _decimal(text: str) -> Decimal:
    value = Decimal(text)
    if not value.is_finite() or abs(value) >= 10**6:
        raise ValueError(text)
    return value


_PARSERS: dict[type, Callable[[str], Any]] = {datetime: _instant, int: _int4, Decimal: _decimal}


@dataclass(frozen=True)
class Keyset:
    """A sort order with a unique tie-breaker, as SQL and as cursors."""

    column: str  # the SQL sort column ("starts_at", "doctors.rating")
    kind: type = datetime  # how the cursor's sort value is read back: datetime, int, Decimal
    descending: bool = False
    key: str = "id"  # the SQL tie-breaker column
    value_field: str | None = None  # the row's field holding the sort value (default: column)
    key_field: str = "id"  # the row's field holding the tie-breaker
    key_kind: Callable[[str], Any] = uuid.UUID  # how the cursor's tie-breaker is read back

    def _after(self, cursor: str | None, p: Params) -> list[str]:
        """The condition for rows after the cursor (none for the first page)."""
        if not cursor:
            return []
        value, last_id = decode_cursor(cursor, 2)
        if not isinstance(value, str) or not isinstance(last_id, str):
            raise invalid_cursor()
        try:
            typed, last = _PARSERS[self.kind](value), self.key_kind(last_id)
        except (ValueError, ArithmeticError, InvalidOperation) as exc:
            raise invalid_cursor() from exc
        op = "<" if self.descending else ">"
        return [f"({self.column}, {self.key}) {op} ({p(typed)}, {p(last)})"]

    def _tail(self, limit: int, p: Params) -> str:
        """``ORDER BY ... LIMIT``: one row more than the page, to see whether more follow."""
        direction = " DESC" if self.descending else ""
        return f"ORDER BY {self.column}{direction}, {self.key}{direction} LIMIT {p(limit + 1)}"

    def select(
        self, columns: str, source: str, where: list[str], cursor: str | None, limit: int, p: Params
    ) -> str:
        """``SELECT columns FROM source`` with the filters, the rows after the cursor, the
        order and one row more than the page."""
        conditions = [*where, *self._after(cursor, p)]
        filters = " WHERE " + " AND ".join(conditions) if conditions else ""
        return f"SELECT {columns} FROM {source}{filters} {self._tail(limit, p)}"

    def page(
        self,
        rows: Sequence[Any],
        limit: int,
        item: Callable[[Any], dict[str, Any]] = dict,
    ) -> dict[str, Any]:
        """The page's items and the cursor to the next page (None on the last)."""
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            value = last[self.value_field or self.column]
            text = value.isoformat() if isinstance(value, datetime) else str(value)
            next_cursor = encode_cursor([text, str(last[self.key_field])])
        return {"items": [item(r) for r in rows[:limit]], "next_cursor": next_cursor}
