"""Holds: an open slot kept for one patient for a few minutes while they decide.

A hold counts while it has not ended and has not expired (``doctors.service.hold_in_force``),
so expiry is exact without any task: no request ever treats an expired hold as in force.
The beat task ``end_expired`` only records what already happened (the hold ends as
``expired``, ``slot.released`` is audited and announced) and refreshes the caches.

A hold is taken like a booking: under the slot's Redis lock, in a transaction that locks
the slot row, and the database refuses two holds in force on one slot and a hold on a
slot that is not open (migration 0007). One patient holds at most one slot per doctor:
a new hold replaces the old one. Holds count toward the booking caps, and a slot its
patient let go of cannot be held by them again before a cool-down (``limits``).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
from redis.asyncio import Redis

from amrutam.audit.actions import Action
from amrutam.audit.log import SYSTEM, Actor, record
from amrutam.doctors.service import hold_in_force
from amrutam.errors import Conflict, NotFound, PermissionDenied
from amrutam.infra.cache import Cache
from amrutam.infra.db import Database
from amrutam.infra.locks import slot_lock
from amrutam.infra.metrics import HOLD_EVENTS
from amrutam.jsonutil import dumps
from amrutam.scheduling.limits import BookingLimits, check_hold
from amrutam.scheduling.slots import lock_slot, touch_slots
from amrutam.scheduling.waitlist import ENDED, Released, released_from, reopen, touch_released
from amrutam.timeutil import utcnow

_HOLD = "id, slot_id, patient_id, expires_at"


class Holds:
    def __init__(
        self,
        db: Database,
        cache: Cache,
        redis: Redis,
        lock_ttl_ms: int,
        ttl_s: int,
        limits: BookingLimits | None = None,
        cooldown_s: int = 600,
    ) -> None:
        self._db = db
        self._cache = cache
        self._redis = redis
        self._lock_ttl_ms = lock_ttl_ms
        self._ttl = timedelta(seconds=ttl_s)
        self._limits = limits or BookingLimits()
        self._cooldown_s = cooldown_s

    async def hold(self, actor: Actor, slot_id: uuid.UUID) -> bytes:
        """Hold an open slot for the caller; a hold of theirs on another slot of the same
        doctor ends (replaced)."""
        if actor.role != "patient":
            raise PermissionDenied("only patients hold slots")
        async with (
            slot_lock(self._redis, str(slot_id), self._lock_ttl_ms),
            self._db.connection() as conn,
            conn.transaction(),
        ):
            slot = await lock_slot(conn, slot_id)
            if slot["status"] != "open":
                raise Conflict(f"this slot is {slot['status']}")
            if slot["held_by"] is not None:
                raise Conflict("this slot is held")
            if slot["starts_at"] <= utcnow():
                raise Conflict("this slot has already started")
            await check_hold(
                conn, self._limits, self._cooldown_s, actor.user_id, slot_id, slot["doctor_id"]
            )
            # Expired holds on this slot, and the caller's hold with this doctor, end now.
            ended = await conn.fetch(
                "UPDATE slot_holds SET ended_at = now(), "
                "ended_as = CASE WHEN expires_at <= now() THEN 'expired' ELSE 'replaced' END "
                "WHERE ended_at IS NULL AND ((slot_id = $1 AND expires_at <= now()) "
                "OR (patient_id = $2 AND doctor_id = $3))" + ENDED,
                slot_id,
                actor.user_id,
                slot["doctor_id"],
            )
            try:
                row = await conn.fetchrow(
                    "INSERT INTO slot_holds (id, slot_id, doctor_id, patient_id, expires_at) "
                    f"VALUES ($1, $2, $3, $4, now() + $5::interval) RETURNING {_HOLD}",
                    uuid.uuid4(),
                    slot_id,
                    slot["doctor_id"],
                    actor.user_id,
                    self._ttl,
                )
            except asyncpg.UniqueViolationError as exc:
                # Held a moment ago (by someone, or by another request of the caller's for
                # this doctor), after this transaction's first look.
                raise Conflict("this slot was held a moment ago") from exc
            # The slots those holds kept are open again (this one is held at once).
            released = [r for r in ended if r["slot_id"] != slot_id]
            for row_ in released:
                await reopen(
                    conn, actor, Released(**released_from(row_)), row_["ended_as"], self._ttl
                )
            await record(
                conn, actor, Action.SLOT_HELD, "slot", slot_id, {"hold_id": str(row["id"])}
            )
        HOLD_EVENTS.labels("created").inc()
        HOLD_EVENTS.labels("replaced").inc(sum(r["ended_as"] == "replaced" for r in released))
        await touch_slots(
            self._cache,
            slot["doctor_id"],
            slot["timezone"],
            [slot["starts_at"], *(r["starts_at"] for r in released)],
        )
        return dumps(dict(row))

    async def release(self, actor: Actor, hold_id: uuid.UUID) -> None:
        """End the caller's hold: its slot opens again (and goes to the waitlist)."""
        async with self._db.connection() as conn, conn.transaction():
            slot_id = await conn.fetchval(
                "SELECT slot_id FROM slot_holds WHERE id = $1 AND patient_id = $2",
                hold_id,
                actor.user_id,
            )
            if slot_id is not None:
                await lock_slot(conn, slot_id)  # the slot first, as every booking locks it
            ended = await conn.fetch(
                "UPDATE slot_holds SET ended_at = now(), ended_as = 'released' "
                f"WHERE id = $1 AND patient_id = $2 AND {hold_in_force('slot_holds')}" + ENDED,
                hold_id,
                actor.user_id,
            )
            if not ended:
                raise NotFound("no such hold in force")
            hold = Released(**released_from(ended[0]))
            await reopen(conn, actor, hold, "released", self._ttl)
        HOLD_EVENTS.labels("released").inc()
        await touch_released(self._cache, [hold])


async def end_expired(conn: asyncpg.Connection, ttl: timedelta) -> list[Released]:
    """Record the holds that expired (a beat task), one transaction each: the hold ends
    as ``expired``, a waitlist offer it carried expires, the slot's release is audited
    and announced, and the slot goes to the next in line. (They stopped counting when
    they expired; this only writes it down.)"""
    due = await conn.fetch(
        "SELECT id, slot_id FROM slot_holds WHERE ended_at IS NULL AND expires_at <= now() "
        "ORDER BY expires_at LIMIT 1000"
    )
    released = []
    for due_hold in due:
        async with conn.transaction():
            if (
                await conn.fetchval(
                    "SELECT 1 FROM availability_slots WHERE id = $1 FOR UPDATE", due_hold["slot_id"]
                )
                is None
            ):
                continue  # the slot was deleted (and its holds with it)
            ended = await conn.fetch(
                "UPDATE slot_holds SET ended_at = now(), ended_as = 'expired' "
                "WHERE id = $1 AND ended_at IS NULL AND expires_at <= now()" + ENDED,
                due_hold["id"],
            )
            if not ended:
                continue  # booked or replaced meanwhile
            hold = Released(**released_from(ended[0]))
            await reopen(conn, SYSTEM, hold, "expired", ttl)
            released.append(hold)
    HOLD_EVENTS.labels("expired").inc(len(released))
    return released
