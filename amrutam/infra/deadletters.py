"""Tasks that exhausted their retries, kept with their error until someone requeues them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from amrutam.jsonutil import dumps, json_value

# Puts a task on a queue: (task name, args, queue). The worker passes Celery's send_task.
Publish = Callable[[str, list[Any], str], None]


async def bury(
    conn: asyncpg.Connection, task_name: str, queue: str, args: list[Any], error: str
) -> uuid.UUID:
    dead_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO dead_letters (id, task_name, queue, args, error) "
        "VALUES ($1, $2, $3, $4::jsonb, $5)",
        dead_id,
        task_name,
        queue,
        dumps(args).decode(),
        error[:4000],
    )
    return dead_id


async def pending(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, task_name, queue, args, error, failed_at FROM dead_letters "
        "WHERE requeued_at IS NULL ORDER BY failed_at"
    )
    return [{**dict(r), "args": json_value(r["args"])} for r in rows]


async def take_for_retry(
    conn: asyncpg.Connection, ids: list[uuid.UUID] | None
) -> list[dict[str, Any]]:
    """Mark dead letters requeued (all pending ones when ``ids`` is None) and return them."""
    rows = await conn.fetch(
        "UPDATE dead_letters SET requeued_at = now() WHERE requeued_at IS NULL "
        "AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[])) "
        "RETURNING id, task_name, queue, args",
        ids,
    )
    return [{**dict(r), "args": json_value(r["args"])} for r in rows]
