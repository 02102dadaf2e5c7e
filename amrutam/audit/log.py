"""Writing audit rows, in the caller's transaction.

Each row carries ``row_hash``, a SHA-256 of its own canonical content, computed here;
hourly seals (``amrutam.audit.seals``) chain those hashes under a key the database
never sees. Writing a row takes no lock and reads nothing, so the hot path is not
serialised behind a global chain.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlmodel.ext.asyncio.session import AsyncSession

from amrutam.audit.actions import Action
from amrutam.jsonutil import json_value
from amrutam.timeutil import utcnow


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it, and from where."""

    user_id: uuid.UUID | None
    role: str | None
    request_id: str | None = None  # the server's id for the request
    ip: str | None = None
    client_request_id: str | None = None  # the caller's X-Request-ID, kept in the detail


SYSTEM = Actor(user_id=None, role="system")


@dataclass(frozen=True, slots=True)
class Entry:
    """One audit row as it is hashed and stored: its fields are listed here, once."""

    id: uuid.UUID
    occurred_at: datetime
    actor_id: uuid.UUID | None
    actor_role: str | None
    action: str
    entity_type: str | None
    entity_id: str | None
    request_id: str | None
    ip: str | None
    detail: str  # canonical JSON (sorted keys), as hashed

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Entry:
        """A stored row (its ``detail`` as JSON text or decoded), ready to re-hash."""
        values = {name: row[name] for name in ENTRY_FIELDS}
        values["detail"] = canonical_detail(json_value(row["detail"]))
        return cls(**values)

    def digest(self) -> str:
        """SHA-256 of the row's canonical content: what ``row_hash`` stores."""
        parts = [
            str(self.id),
            self.occurred_at.isoformat(timespec="microseconds"),
            str(self.actor_id or ""),
            self.actor_role or "",
            self.action,
            self.entity_type or "",
            self.entity_id or "",
            self.request_id or "",
            self.ip or "",
            self.detail,
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def row(self) -> tuple[Any, ...]:
        """The values of ``COLUMNS``, in order: the entry and its digest. They are the
        table's own columns in its order, so a row also passes as one ``audit_logs``
        value (the booking function's argument)."""
        return (*(getattr(self, name) for name in ENTRY_FIELDS), self.digest())


ENTRY_FIELDS = tuple(f.name for f in fields(Entry))
COLUMNS = (*ENTRY_FIELDS, "row_hash")


INSERT = (
    f"INSERT INTO audit_logs ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(COLUMNS) + 1))})"
)


def canonical_detail(detail: dict[str, Any] | None) -> str:
    return orjson.dumps(detail or {}, option=orjson.OPT_SORT_KEYS).decode()


def entry(
    actor: Actor,
    action: Action,
    entity_type: str | None = None,
    entity_id: uuid.UUID | str | None = None,
    detail: dict[str, Any] | None = None,
) -> Entry:
    """The audit row for ``action`` done by ``actor`` now."""
    return Entry(
        id=uuid.uuid4(),
        occurred_at=utcnow(),
        actor_id=actor.user_id,
        actor_role=actor.role,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id) if entity_id is not None else None,
        request_id=actor.request_id,
        ip=actor.ip,
        detail=canonical_detail(
            {**(detail or {}), "client_request_id": actor.client_request_id}
            if actor.client_request_id
            else detail
        ),
    )


async def record(
    conn: asyncpg.Connection,
    actor: Actor,
    action: Action,
    entity_type: str | None = None,
    entity_id: uuid.UUID | str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row using ``conn``'s current transaction."""
    row = entry(actor, action, entity_type, entity_id, detail).row()
    await conn.execute(INSERT, *row)


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under an ORM session, inside the session's transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def record_in(
    session: AsyncSession,
    actor: Actor,
    action: Action,
    entity_type: str | None = None,
    entity_id: uuid.UUID | str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await record(await driver_connection(session), actor, action, entity_type, entity_id, detail)
