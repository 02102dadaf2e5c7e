"""Reading and checking the audit trail (admins), sealing it (a periodic task)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from amrutam.audit.log import Actor, record
from amrutam.audit.schemas import AuditQuery
from amrutam.audit.seals import Verdict, seal, verify
from amrutam.infra.db import Database
from amrutam.jsonutil import dumps, json_value
from amrutam.pagination import decode_cursor, encode_cursor, invalid_cursor

_COLUMNS = (
    "id, occurred_at, actor_id, actor_role, action, entity_type, entity_id, request_id, ip, detail"
)


def build_query(query: AuditQuery) -> tuple[str, list[Any]]:
    """Newest first; a time range prunes the partitions outside it."""
    args: list[Any] = []
    where: list[str] = []
    for column, value, op in (
        ("actor_id", query.actor_id, "="),
        ("action", query.action, "="),
        ("entity_type", query.entity_type, "="),
        ("entity_id", query.entity_id, "="),
        ("occurred_at", query.from_, ">="),
        ("occurred_at", query.to, "<"),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{column} {op} ${len(args)}")
    if query.cursor:
        occurred, last_id = decode_cursor(query.cursor, 2)
        try:
            args += [datetime.fromisoformat(occurred), uuid.UUID(last_id)]
        except (TypeError, ValueError) as exc:
            raise invalid_cursor() from exc
        where.append(f"(occurred_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(query.limit + 1)
    sql = (
        f"SELECT {_COLUMNS} FROM audit_logs"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY occurred_at DESC, id DESC LIMIT ${len(args)}"
    )
    return sql, args


class AuditTrail:
    def __init__(self, db: Database, signing_key: bytes) -> None:
        self._db = db
        self._key = signing_key

    async def search(self, actor: Actor, query: AuditQuery) -> bytes:
        sql, args = build_query(query)
        async with self._db.connection() as conn, conn.transaction():
            rows = await conn.fetch(sql, *args)
            filters = query.model_dump(mode="json", exclude_none=True, exclude={"cursor"})
            await record(conn, actor, "audit.viewed", "audit_logs", None, filters)
        items = [{**dict(r), "detail": json_value(r["detail"])} for r in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            last = rows[query.limit - 1]
            next_cursor = encode_cursor([last["occurred_at"].isoformat(), str(last["id"])])
        return dumps({"items": items, "next_cursor": next_cursor})

    async def verify(
        self, actor: Actor | None, start: datetime | None, end: datetime | None
    ) -> Verdict:
        async with self._db.connection() as conn:
            verdict = await verify(conn, self._key, start, end)
            if actor is not None:
                async with conn.transaction():
                    await record(
                        conn,
                        actor,
                        "audit.verified",
                        "audit_logs",
                        None,
                        {"ok": verdict.ok, "checked": verdict.checked},
                    )
        return verdict

    async def seal(self) -> int:
        async with self._db.connection() as conn, conn.transaction():
            return await seal(conn, self._key)
