"""The waitlist: patients in line for a doctor's date (in the doctor's time zone), each
offered the next slot that opens there, as a hold.

``offer`` runs inside the transaction that opens a slot (a cancellation, a reschedule
away, new slots, a hold released or expired): it locks the slot row, takes the first
patient in line whose window the slot fits, holds the slot for them and announces
``waitlist.offered`` (the workers notify them). First come, first offered; one entry in
line per patient, doctor and date, and one hold per patient and doctor (a patient with
a hold of that doctor not ended yet, even an expired one the beat task has not recorded,
is passed over for now), so nobody is offered two slots of one doctor and date at once,
and a slot holds one offer. An offer not used before its hold expires passes to the next
in line (``holds.end_expired``); one released or replaced counts as declined.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from amrutam.audit.actions import Action
from amrutam.audit.log import SYSTEM, Actor, record
from amrutam.doctors.service import hold_in_force
from amrutam.errors import Conflict, FieldError, InvalidInput, NotFound, PermissionDenied
from amrutam.infra.cache import Cache
from amrutam.infra.db import Database
from amrutam.infra.metrics import HOLD_EVENTS, WAITLIST_EVENTS
from amrutam.infra.outbox import emit
from amrutam.jsonutil import dumps
from amrutam.scheduling.limits import lock_patient
from amrutam.scheduling.schemas import WaitlistIn
from amrutam.scheduling.slots import lock_slot, touch_slots
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


@dataclass(frozen=True, slots=True)
class Released:
    """A hold that ended without a booking: its slot is open again."""

    hold_id: uuid.UUID
    slot_id: uuid.UUID
    doctor_id: uuid.UUID
    patient_id: uuid.UUID
    starts_at: datetime
    timezone: str


# The holds that end, with what the slot's caches and the announcement need.
ENDED = """
RETURNING slot_holds.id AS hold_id, slot_holds.slot_id, slot_holds.doctor_id,
    slot_holds.patient_id, slot_holds.ended_as,
    (SELECT s.starts_at FROM availability_slots s WHERE s.id = slot_holds.slot_id) AS starts_at,
    (SELECT d.timezone FROM doctors d WHERE d.user_id = slot_holds.doctor_id) AS timezone
"""


class Waitlist:
    def __init__(self, db: Database, cache: Cache, hold_ttl_s: int, max_entries: int = 5) -> None:
        self._db = db
        self._cache = cache
        self._ttl = timedelta(seconds=hold_ttl_s)
        self._max_entries = max_entries

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
            # One line at a time per patient, counted under their booking lock (G1: any
            # number of lines was one more way to keep slots from others).
            await lock_patient(conn, actor.user_id)
            waiting = await conn.fetchval(
                "SELECT count(*) FROM waitlist_entries "
                "WHERE patient_id = $1 AND status IN ('waiting', 'offered')",
                actor.user_id,
            )
            if waiting >= self._max_entries:
                raise Conflict(
                    f"you are already in {waiting} waitlists; at most {self._max_entries} at a time"
                )
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
        """Out of line; an offer not taken yet is declined and passes to the next."""
        async with self._db.connection() as conn, conn.transaction():
            found = await conn.fetchrow(
                "SELECT w.status, h.id AS hold_id, h.slot_id FROM waitlist_entries w "
                "LEFT JOIN slot_holds h ON h.id = w.hold_id WHERE w.id = $1 AND w.patient_id = $2",
                entry_id,
                actor.user_id,
            )
            ended = []
            if found is not None and found["status"] == "offered" and found["slot_id"]:
                await lock_slot(conn, found["slot_id"])  # the slot first, as bookings lock it
                ended = await conn.fetch(
                    "UPDATE slot_holds SET ended_at = now(), ended_as = 'released' "
                    f"WHERE id = $1 AND {hold_in_force('slot_holds')}" + ENDED,
                    found["hold_id"],
                )
            left = await conn.fetchval(
                "UPDATE waitlist_entries SET status = 'cancelled', updated_at = now() "
                "WHERE id = $1 AND patient_id = $2 AND status IN ('waiting', 'offered') "
                "RETURNING id",
                entry_id,
                actor.user_id,
            )
            if left is None:
                raise NotFound("no such entry in line")
            released = [Released(**released_from(row)) for row in ended]
            for hold in released:
                await reopen(conn, actor, hold, "released", self._ttl)
        await touch_released(self._cache, released)


async def offer(
    conn: asyncpg.Connection, slot_id: uuid.UUID, ttl: timedelta, actor: Actor = SYSTEM
) -> Offer | None:
    """Offer an open slot to the first patient in line for it, inside the caller's
    transaction; None when the slot is not free or nobody waits for it."""
    slot = await lock_slot(conn, slot_id)
    if slot["status"] != "open" or slot["held_by"] is not None or slot["starts_at"] <= utcnow():
        return None
    entry = await conn.fetchrow(
        """
        SELECT w.id, w.patient_id FROM waitlist_entries w
        WHERE w.doctor_id = $1 AND w.status = 'waiting'
          AND w.day = ($2::timestamptz AT TIME ZONE $4)::date
          AND (w.from_time IS NULL OR ($2::timestamptz AT TIME ZONE $4)::time >= w.from_time)
          AND (w.to_time IS NULL OR ($3::timestamptz AT TIME ZONE $4)::time <= w.to_time)
          AND NOT EXISTS (SELECT 1 FROM slot_holds h WHERE h.patient_id = w.patient_id
                          AND h.doctor_id = w.doctor_id AND h.ended_at IS NULL)
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


def released_from(row: asyncpg.Record) -> dict[str, Any]:
    return {f.name: row[f.name] for f in fields(Released)}


async def reopen(
    conn: asyncpg.Connection, actor: Actor, hold: Released, reason: str, ttl: timedelta
) -> None:
    """A hold ended without a booking: the waitlist offer it carried (if any) is over,
    expired or declined; audit and announce the release, then offer the slot to the
    first in its line, in the same transaction."""
    lapsed = await conn.fetchval(
        "UPDATE waitlist_entries SET updated_at = now(), "
        "status = CASE WHEN $2 = 'expired' THEN 'expired' ELSE 'cancelled' END "
        "WHERE hold_id = $1 AND status = 'offered' RETURNING id",
        hold.hold_id,
        reason,
    )
    if lapsed is not None and reason == "expired":
        WAITLIST_EVENTS.labels("expired").inc()
    detail = {"hold_id": str(hold.hold_id), "reason": reason}
    await record(conn, actor, Action.SLOT_RELEASED, "slot", hold.slot_id, detail)
    await emit(
        conn,
        "slot.released",
        hold.slot_id,
        {
            "slot_id": str(hold.slot_id),
            "doctor_id": str(hold.doctor_id),
            "starts_at": hold.starts_at.isoformat(),
            "reason": reason,
        },
    )
    await offer(conn, hold.slot_id, ttl)


async def touch_released(cache: Cache, released: list[Released]) -> None:
    """After the commit that ended these holds: their slots' caches."""
    for hold in released:
        await touch_slots(cache, hold.doctor_id, hold.timezone, [hold.starts_at])
