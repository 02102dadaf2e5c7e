"""Reading and checking the audit trail (admins), sealing it (a periodic task)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, record
from amrutam.audit.schemas import AuditQuery
from amrutam.audit.seals import Verdict, seal, verify
from amrutam.infra.db import Database
from amrutam.jsonutil import dumps, json_value
from amrutam.pagination import Keyset, Params

_COLUMNS = (
    "id, occurred_at, actor_id, actor_role, action, entity_type, entity_id, request_id, ip, detail"
)


NEWEST_FIRST = Keyset("occurred_at", descending=True)


def build_query(query: AuditQuery) -> tuple[str, list[Any]]:
    """Newest first; a time range prunes the partitions outside it."""
    p = Params()
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
            where.append(f"{column} {op} {p(value)}")
    sql = NEWEST_FIRST.select(_COLUMNS, "audit_logs", where, query.cursor, query.limit, p)
    return sql, p.values


def _item(row: Any) -> dict[str, Any]:
    return {**dict(row), "detail": json_value(row["detail"])}


class AuditTrail:
    def __init__(self, db: Database, signing_key: bytes) -> None:
        self._db = db
        self._key = signing_key

    async def search(self, actor: Actor, query: AuditQuery) -> bytes:
        sql, args = build_query(query)
        async with self._db.connection() as conn, conn.transaction():
            rows = await conn.fetch(sql, *args)
            filters = query.model_dump(mode="json", exclude_none=True, exclude={"cursor"})
            await record(conn, actor, Action.AUDIT_VIEWED, "audit_logs", None, filters)
        return dumps(NEWEST_FIRST.page(rows, query.limit, item=_item))

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
                        Action.AUDIT_VERIFIED,
                        "audit_logs",
                        None,
                        {"ok": verdict.ok, "checked": verdict.checked},
                    )
        return verdict

    async def seal(self) -> int:
        async with self._db.connection() as conn, conn.transaction():
            return await seal(conn, self._key)
