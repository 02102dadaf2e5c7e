"""The transactional outbox: events written with the change they announce.

``emit`` runs inside the business transaction, so a committed booking always has its
event and a rolled-back one never does. ``relay`` hands unpublished events to a
publisher (Celery) and marks them published; a crash between the two publishes an
event again, which is why every consumer is idempotent by event id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from amrutam.jsonutil import dumps, json_value

Publish = Callable[[dict[str, Any]], None]


INSERT = "INSERT INTO outbox (id, event_type, aggregate_id, payload) VALUES ($1, $2, $3, $4::jsonb)"


async def emit(
    conn: asyncpg.Connection, event_type: str, aggregate_id: uuid.UUID, payload: dict[str, Any]
) -> uuid.UUID:
    event_id = uuid.uuid4()
    await conn.execute(INSERT, event_id, event_type, aggregate_id, dumps(payload).decode())
    return event_id


async def relay(conn: asyncpg.Connection, publish: Publish, batch: int = 500) -> int:
    """Publish one batch of pending events, oldest first; returns how many."""
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id, event_type, aggregate_id, payload, created_at FROM outbox "
            "WHERE published_at IS NULL ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            batch,
        )
        for row in rows:
            publish(
                {
                    "id": str(row["id"]),
                    "type": row["event_type"],
                    "aggregate_id": str(row["aggregate_id"]),
                    "payload": json_value(row["payload"]),
                }
            )
        if rows:
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])",
                [r["id"] for r in rows],
            )
    return len(rows)
