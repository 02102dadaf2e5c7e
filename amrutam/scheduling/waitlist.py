"""The waitlist: patients in line for a doctor's date (in the doctor's time zone), each
offered the next slot that opens there, as a hold.

``offer`` runs inside the transaction that opens a slot (a cancellation, a reschedule
away, new slots, a hold released or expired): it locks the slot row, takes the first
patient in line whose window the slot fits, holds the slot for them and announces
``waitlist.offered`` (the workers notify them). First come, first offered; one entry in
line per patient, doctor and date, and one hold per patient and doctor, so nobody is
offered two slots of one doctor and date at once, and a slot holds one offer. An offer
not used before its hold expires passes to the next in line (``holds.end_expired``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from amrutam.audit.actions import Action
from amrutam.audit.log import SYSTEM, Actor, record
from amrutam.doctors.service import hold_in_force
from amrutam.errors import Conflict, FieldError, InvalidInput, NotFound, PermissionDenied
from amrutam.infra.db import Database
from amrutam.infra.metrics import HOLD_EVENTS, WAITLIST_EVENTS
from amrutam.infra.outbox import emit
from amrutam.jsonutil import dumps
from amrutam.scheduling.schemas import WaitlistIn
from amrutam.scheduling.slots import lock_slot
from amrutam.timeutil import utcnow

_ENTRY = """
SELECT w.id, w.doctor_id, w.day AS date, w.from_time, w.to_time, w.status, w.created_at,
    h.id AS hold_id, h.expires_at
FROM waitlist_entries w LEFT JOIN slot_holds h ON h.id = w.hold_id AND w.status = 'offered'
"""


@dataclass(frozen=True, slots=True)
class Offer:
    entry_id: uuid.UUID
    patient_id: uuid.UUID
    hold_id: uuid.UUID


class Waitlist:
    def __init__(self, db: Database, hold_ttl_s: int) -> None:
        self._db = db
        self._ttl = timedelta(seconds=hold_ttl_s)

    async def join(self, actor: Actor, doctor_id: uuid.UUID, data: WaitlistIn) -> bytes:
        if actor.role != "patient":
            raise PermissionDenied("only patients join a waitlist")
        async with self._db.connection() as conn, conn.transaction():
            today = await conn.fetchval(
                "SELECT (now() AT TIME ZONE timezone)::date FROM doctors WHERE user_id = $1",
                doctor_id,
            )
            if today is None:
                raise NotFound("no such doctor")
            if data.date < today:
                raise InvalidInput("that date has passed", [FieldError("date", "in the past")])
            entry_id = uuid.uuid4()
            try:
                await conn.execute(
                    "INSERT INTO waitlist_entries (id, doctor_id, patient_id, day, from_time, "
                    "to_time) VALUES ($1, $2, $3, $4, $5, $6)",
                    entry_id,
                    doctor_id,
                    actor.user_id,
                    data.date,
                    data.from_time,
                    data.to_time,
                )
            except asyncpg.UniqueViolationError as exc:
                raise Conflict("you are already in line for this doctor and date") from exc
            await record(
                conn,
                actor,
                Action.WAITLIST_JOINED,
                "waitlist_entry",
                entry_id,
                {"doctor_id": str(doctor_id)},
            )
            row = await conn.fetchrow(_ENTRY + "WHERE w.id = $1", entry_id)
        WAITLIST_EVENTS.labels("joined").inc()
        return dumps(_entry(row))

    async def entries(self, actor: Actor) -> bytes:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                _ENTRY + "WHERE w.patient_id = $1 ORDER BY w.day, w.created_at", actor.user_id
            )
        return dumps({"items": [_entry(r) for r in rows]})

    async def leave(self, actor: Actor, entry_id: uuid.UUID) -> None:
        """Out of line; an offer not taken yet passes to the next in line."""
        async with self._db.connection() as conn, conn.transaction():
            entry = await conn.fetchrow(
                "SELECT status, hold_id FROM waitlist_entries "
                "WHERE id = $1 AND patient_id = $2 AND status IN ('waiting', 'offered') FOR UPDATE",
                entry_id,
                actor.user_id,
            )
            if entry is None:
                raise NotFound("no such entry in line")
            await conn.execute(
                "UPDATE waitlist_entries SET status = 'cancelled', updated_at = now() "
                "WHERE id = $1",
                entry_id,
            )
            if entry["status"] == "offered" and entry["hold_id"] is not None:
                slot_id = await conn.fetchval(
                    "SELECT slot_id FROM slot_holds WHERE id = $1", entry["hold_id"]
                )
                await lock_slot(conn, slot_id)
                ended = await conn.fetchval(
                    "UPDATE slot_holds SET ended_at = now(), ended_as = 'released' "
                    f"WHERE id = $1 AND {hold_in_force('slot_holds')} RETURNING id",
                    entry["hold_id"],
                )
                if ended is not None:
                    await offer(conn, slot_id, self._ttl)


async def offer(
    conn: asyncpg.Connection, slot_id: uuid.UUID, ttl: timedelta, actor: Actor = SYSTEM
) -> Offer | None:
    """Offer an open slot to the first patient in line for it, inside the caller's
    transaction; None when the slot is not free or nobody waits for it."""
    slot = await lock_slot(conn, slot_id)
    if slot["status"] != "open" or slot["held_by"] is not None or slot["starts_at"] <= utcnow():
        return None
    entry = await conn.fetchrow(
        f"""
        SELECT w.id, w.patient_id FROM waitlist_entries w
        WHERE w.doctor_id = $1 AND w.status = 'waiting'
          AND w.day = ($2::timestamptz AT TIME ZONE $4)::date
          AND (w.from_time IS NULL OR ($2::timestamptz AT TIME ZONE $4)::time >= w.from_time)
          AND (w.to_time IS NULL OR ($3::timestamptz AT TIME ZONE $4)::time <= w.to_time)
          AND NOT EXISTS (SELECT 1 FROM slot_holds h WHERE h.patient_id = w.patient_id
                          AND h.doctor_id = w.doctor_id AND {hold_in_force("h")})
        ORDER BY w.created_at, w.id
        LIMIT 1 FOR UPDATE OF w SKIP LOCKED
        """,
        slot["doctor_id"],
        slot["starts_at"],
        slot["ends_at"],
        slot["timezone"],
    )
    if entry is None:
        return None
    # An expired hold of theirs with this doctor, not recorded yet, ends now.
    await conn.execute(
        "UPDATE slot_holds SET ended_at = now(), ended_as = 'expired' "
        "WHERE patient_id = $1 AND doctor_id = $2 AND ended_at IS NULL",
        entry["patient_id"],
        slot["doctor_id"],
    )
    hold = await conn.fetchrow(
        "INSERT INTO slot_holds (id, slot_id, doctor_id, patient_id, expires_at) "
        "VALUES ($1, $2, $3, $4, now() + $5::interval) RETURNING id, expires_at",
        uuid.uuid4(),
        slot_id,
        slot["doctor_id"],
        entry["patient_id"],
        ttl,
    )
    await conn.execute(
        "UPDATE waitlist_entries SET status = 'offered', hold_id = $2, updated_at = now() "
        "WHERE id = $1",
        entry["id"],
        hold["id"],
    )
    detail = {"slot_id": str(slot_id), "hold_id": str(hold["id"])}
    await record(conn, actor, Action.WAITLIST_OFFERED, "waitlist_entry", entry["id"], detail)
    await emit(
        conn,
        "waitlist.offered",
        entry["id"],
        {
            "patient_id": str(entry["patient_id"]),
            "doctor_id": str(slot["doctor_id"]),
            "slot_id": str(slot_id),
            "hold_id": str(hold["id"]),
            "starts_at": slot["starts_at"].isoformat(),
            "expires_at": hold["expires_at"].isoformat(),
        },
    )
    HOLD_EVENTS.labels("created").inc()
    WAITLIST_EVENTS.labels("offered").inc()
    return Offer(entry["id"], entry["patient_id"], hold["id"])


def _entry(row: asyncpg.Record) -> dict[str, object]:
    entry = dict(row)
    hold_id, expires_at = entry.pop("hold_id"), entry.pop("expires_at")
    if hold_id is not None:
        entry["offer"] = {"hold_id": hold_id, "expires_at": expires_at}
    return entry
