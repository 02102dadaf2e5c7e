"""The visit: consultations and prescriptions, each step audited in its transaction.

Clinical content (notes, diagnosis, prescription items) is returned to the people
allowed to see it and never written to logs or to audit details.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import orjson

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, record
from amrutam.consultations.schemas import CompleteIn, PageQuery, PrescriptionIn
from amrutam.errors import Conflict, FieldError, InvalidInput, NotFound
from amrutam.infra.db import Database
from amrutam.infra.outbox import emit
from amrutam.jsonutil import dumps, json_value
from amrutam.pagination import Keyset, Params

_CONSULTATION = (
    "id, appointment_id, doctor_id, patient_id, status, started_at, completed_at, notes, diagnosis"
)
_PRESCRIPTION = "id, consultation_id, doctor_id, patient_id, items, notes, issued_at"
# How long an Idempotency-Key keeps its first answer (the HTTP contract's 24 hours).
REPLAY_WINDOW = timedelta(hours=24)
NEWEST_ISSUED = Keyset("issued_at", descending=True)
# One row per prescription item, newest prescription first; the tie-breaker is the item's
# own id, "<prescription id>-<item number>" (zero-padded, so that it sorts).
_ITEM_KEY = "(p.id::text || '-' || lpad(i.n::text, 2, '0'))"
NEWEST_ITEMS = Keyset(
    "p.issued_at",
    descending=True,
    key=_ITEM_KEY,
    value_field="issued_at",
    key_field="item_key",
    key_kind=str,
)


def _prescription(row: asyncpg.Record) -> dict[str, Any]:
    return {**dict(row), "items": json_value(row["items"])}


def _item(row: asyncpg.Record) -> dict[str, Any]:
    found = dict(row)
    del found["item_key"]
    return {**found, "item": json_value(row["item"])}


@dataclass(frozen=True, slots=True)
class Issued:
    body: bytes
    created: bool


async def _earlier_prescription(
    conn: asyncpg.Connection, actor: Actor, key: str
) -> asyncpg.Record | None:
    """The prescription this doctor issued under ``key`` within the replay window; an
    older holder of the key gives it up (the contract keeps a key for 24 hours)."""
    await conn.execute(
        "UPDATE prescriptions SET idempotency_key = NULL WHERE doctor_id = $1 "
        "AND idempotency_key = $2 AND issued_at < now() - $3::interval",
        actor.user_id,
        key,
        REPLAY_WINDOW,
    )
    return await conn.fetchrow(
        f"SELECT {_PRESCRIPTION} FROM prescriptions WHERE doctor_id = $1 AND idempotency_key = $2",
        actor.user_id,
        key,
    )


def _may_see(actor: Actor, row: asyncpg.Record) -> bool:
    return actor.role == "admin" or actor.user_id in (row["patient_id"], row["doctor_id"])


class Consultations:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(self, actor: Actor, appointment_id: uuid.UUID) -> bytes:
        async with self._db.connection() as conn, conn.transaction():
            appointment = await conn.fetchrow(
                "SELECT status, patient_id, doctor_id FROM appointments "
                "WHERE id = $1 AND doctor_id = $2 FOR UPDATE",
                appointment_id,
                actor.user_id,
            )
            if appointment is None:
                raise NotFound("no such appointment")
            if appointment["status"] != "booked":
                raise Conflict(f"the appointment is {appointment['status']}")
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO consultations (id, appointment_id, doctor_id, patient_id) "
                    f"VALUES ($1, $2, $3, $4) RETURNING {_CONSULTATION}",
                    uuid.uuid4(),
                    appointment_id,
                    appointment["doctor_id"],
                    appointment["patient_id"],
                )
            except asyncpg.UniqueViolationError as exc:
                raise Conflict("this consultation has already started") from exc
            await record(
                conn,
                actor,
                Action.CONSULTATION_STARTED,
                "consultation",
                row["id"],
                {"appointment_id": str(appointment_id)},
            )
        return dumps(dict(row))

    async def complete(self, actor: Actor, consultation_id: uuid.UUID, data: CompleteIn) -> bytes:
        async with self._db.connection() as conn, conn.transaction():
            current = await conn.fetchrow(
                "SELECT status, appointment_id FROM consultations "
                "WHERE id = $1 AND doctor_id = $2 FOR UPDATE",
                consultation_id,
                actor.user_id,
            )
            if current is None:
                raise NotFound("no such consultation")
            if current["status"] != "started":
                raise Conflict("this consultation is already completed")
            row = await conn.fetchrow(
                f"UPDATE consultations SET status = 'completed', completed_at = now(), "
                f"notes = $2, diagnosis = $3 WHERE id = $1 RETURNING {_CONSULTATION}",
                consultation_id,
                data.notes,
                data.diagnosis,
            )
            # Only a booked appointment becomes completed: a visit never revives one that
            # was cancelled or marked a no-show.
            await conn.execute(
                "UPDATE appointments SET status = 'completed', updated_at = now() "
                "WHERE id = $1 AND status = 'booked'",
                current["appointment_id"],
            )
            await record(
                conn, actor, Action.CONSULTATION_COMPLETED, "consultation", consultation_id
            )
        return dumps(dict(row))

    async def get(self, actor: Actor, consultation_id: uuid.UUID) -> bytes:
        row = await self._read(
            actor,
            f"SELECT {_CONSULTATION} FROM consultations WHERE id = $1",
            "consultation",
            consultation_id,
            (Action.CONSULTATION_VIEWED, Action.CONSULTATION_VIEW_DENIED),
        )
        return dumps(dict(row))

    async def _read(
        self,
        actor: Actor,
        sql: str,
        entity: str,
        record_id: uuid.UUID,
        actions: tuple[Action, Action],
    ) -> asyncpg.Record:
        """One clinical record for whoever may see it. Every read is audited, a refused
        one too (``actions``: viewed, denied), so probing for others' records leaves a
        trace."""
        async with self._db.connection() as conn, conn.transaction():
            row = await conn.fetchrow(sql, record_id)
            allowed = row is not None and _may_see(actor, row)
            await record(conn, actor, actions[0] if allowed else actions[1], entity, record_id)
        if row is None or not allowed:
            raise NotFound(f"no such {entity}")
        return row

    async def prescribe(
        self,
        actor: Actor,
        consultation_id: uuid.UUID,
        data: PrescriptionIn,
        *,
        idempotency_key: str | None = None,
    ) -> Issued:
        """Issue a prescription. A retry with the same Idempotency-Key within 24 hours
        gets the first one back (``created`` False), whether or not Redis saw the key."""
        items = orjson.dumps([item.model_dump() for item in data.items]).decode()
        async with self._db.connection() as conn, conn.transaction():
            consultation = await conn.fetchrow(
                "SELECT patient_id FROM consultations WHERE id = $1 AND doctor_id = $2",
                consultation_id,
                actor.user_id,
            )
            if consultation is None:
                raise NotFound("no such consultation")
            if idempotency_key is not None:
                earlier = await _earlier_prescription(conn, actor, idempotency_key)
                if earlier is not None:
                    if earlier["consultation_id"] != consultation_id:
                        raise InvalidInput(
                            "this Idempotency-Key was already used for a different request"
                        )
                    return Issued(dumps(_prescription(earlier)), created=False)
            row = await conn.fetchrow(
                f"INSERT INTO prescriptions (id, consultation_id, doctor_id, patient_id, items, "
                f"notes, idempotency_key) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) "
                f"RETURNING {_PRESCRIPTION}",
                uuid.uuid4(),
                consultation_id,
                actor.user_id,
                consultation["patient_id"],
                items,
                data.notes,
                idempotency_key,
            )
            await record(
                conn,
                actor,
                Action.PRESCRIPTION_ISSUED,
                "prescription",
                row["id"],
                {"consultation_id": str(consultation_id), "items": len(data.items)},
            )
            await emit(
                conn,
                "prescription.issued",
                row["id"],
                {
                    "prescription_id": str(row["id"]),
                    "patient_id": str(row["patient_id"]),
                    "doctor_id": str(row["doctor_id"]),
                },
            )
        return Issued(dumps(_prescription(row)), created=True)

    async def prescription(self, actor: Actor, prescription_id: uuid.UUID) -> bytes:
        row = await self._read(
            actor,
            f"SELECT {_PRESCRIPTION} FROM prescriptions WHERE id = $1",
            "prescription",
            prescription_id,
            (Action.PRESCRIPTION_VIEWED, Action.PRESCRIPTION_VIEW_DENIED),
        )
        return dumps(_prescription(row))

    async def prescription_items(
        self, actor: Actor, patient_id: uuid.UUID | None, query: PageQuery
    ) -> bytes:
        """A patient's prescription items one by one (each with its prescription's
        fields, ``item`` and its number ``n``), newest first. A patient sees their own,
        a doctor those they issued, an admin anyone's; the listing is audited."""
        if actor.role not in ("doctor", "admin"):
            if patient_id not in (None, actor.user_id):  # another patient's: none to see
                return dumps({"items": [], "next_cursor": None})
            patient_id = actor.user_id
        elif patient_id is None:
            raise InvalidInput("name the patient", [FieldError("patient", "required")])
        p = Params()
        where = [f"p.patient_id = {p(patient_id)}"]
        if actor.role == "doctor":
            where.append(f"p.doctor_id = {p(actor.user_id)}")
        sql = NEWEST_ITEMS.select(
            "p.id, p.consultation_id, p.doctor_id, p.patient_id, p.notes, p.issued_at, "
            f"i.item, i.n, {_ITEM_KEY} AS item_key",
            "prescriptions p CROSS JOIN LATERAL "
            "jsonb_array_elements(p.items) WITH ORDINALITY AS i(item, n)",
            where,
            query.cursor,
            query.limit,
            p,
        )
        rows = await self._listed(actor, patient_id, sql, p.values, query.limit, "listed_items")
        return dumps(NEWEST_ITEMS.page(rows, query.limit, item=_item))

    async def patient_prescriptions(self, actor: Actor, query: PageQuery) -> bytes:
        p = Params()
        where = [f"patient_id = {p(actor.user_id)}"]
        sql = NEWEST_ISSUED.select(
            _PRESCRIPTION, "prescriptions", where, query.cursor, query.limit, p
        )
        rows = await self._listed(actor, actor.user_id, sql, p.values, query.limit, "listed")
        return dumps(NEWEST_ISSUED.page(rows, query.limit, item=_prescription))

    async def _listed(
        self,
        actor: Actor,
        patient_id: uuid.UUID | None,
        sql: str,
        values: list[Any],
        limit: int,
        count_as: str,
    ) -> list[asyncpg.Record]:
        """A page of a patient's prescriptions, its read audited in the same transaction
        (``count_as``: the detail field that says how many were listed)."""
        async with self._db.connection() as conn, conn.transaction():
            rows: list[asyncpg.Record] = await conn.fetch(sql, *values)
            await record(
                conn,
                actor,
                Action.PRESCRIPTION_VIEWED,
                "patient",
                patient_id,
                {count_as: len(rows[:limit])},
            )
        return rows
