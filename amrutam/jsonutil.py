"""One JSON encoder for everything served or cached."""

from __future__ import annotations

from typing import Any

import orjson


def _fallback(value: Any) -> str:
    # asyncpg's own UUID class and Decimal: their text form is the JSON form.
    return str(value)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_fallback)


def json_value(value: Any) -> Any:
    """A json/jsonb column as Python data, whichever codec the connection has (the
    SQLAlchemy pool's connections decode it; plain asyncpg ones return text)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value
