"""Writing audit rows, in the caller's transaction.

Each row carries ``row_hash``, a SHA-256 of its own canonical content, computed here;
hourly seals (``amrutam.audit.seals``) chain those hashes under a key the database
never sees. Writing a row takes no lock and reads nothing, so the hot path is not
serialised behind a global chain.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlmodel.ext.asyncio.session import AsyncSession

from amrutam.timeutil import utcnow


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it, and from where."""

    user_id: uuid.UUID | None
    role: str | None
    request_id: str | None = None
    ip: str | None = None


SYSTEM = Actor(user_id=None, role="system")

INSERT = """
INSERT INTO audit_logs (id, occurred_at, actor_id, actor_role, action, entity_type,
    entity_id, request_id, ip, detail, row_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
"""


def canonical_detail(detail: dict[str, Any] | None) -> str:
    return orjson.dumps(detail or {}, option=orjson.OPT_SORT_KEYS).decode()


def row_hash(
    row_id: uuid.UUID,
    occurred_at: datetime,
    actor_id: uuid.UUID | None,
    actor_role: str | None,
    action: str,
    entity_type: str | None,
    entity_id: str | None,
    request_id: str | None,
    ip: str | None,
    detail: str,
) -> str:
    parts = [
        str(row_id),
        occurred_at.isoformat(timespec="microseconds"),
        str(actor_id or ""),
        actor_role or "",
        action,
        entity_type or "",
        entity_id or "",
        request_id or "",
        ip or "",
        detail,
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


async def record(
    conn: asyncpg.Connection,
    actor: Actor,
    action: str,
    entity_type: str | None = None,
    entity_id: uuid.UUID | str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row using ``conn``'s current transaction."""
    row_id, occurred_at, text = uuid.uuid4(), utcnow(), canonical_detail(detail)
    entity = str(entity_id) if entity_id is not None else None
    digest = row_hash(
        row_id,
        occurred_at,
        actor.user_id,
        actor.role,
        action,
        entity_type,
        entity,
        actor.request_id,
        actor.ip,
        text,
    )
    await conn.execute(
        INSERT,
        row_id,
        occurred_at,
        actor.user_id,
        actor.role,
        action,
        entity_type,
        entity,
        actor.request_id,
        actor.ip,
        text,
        digest,
    )


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under an ORM session, inside the session's transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def record_in(
    session: AsyncSession,
    actor: Actor,
    action: str,
    entity_type: str | None = None,
    entity_id: uuid.UUID | str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await record(await driver_connection(session), actor, action, entity_type, entity_id, detail)
