"""Appointments: booking that never double-books, cancel, reschedule, reading them.

The booking path has three layers, each enough for a different failure:
1. a Redis lock per slot sheds contention before the database (429 to the loser);
2. one transaction (the database function ``book_slot``) locks the slot row (``FOR
   UPDATE``), checks it (open, not held by someone else), inserts the appointment and
   marks the slot booked;
3. the partial unique index on booked appointments refuses a second booking, and a
   trigger an appointment on a slot another patient holds, even if the lock expired
   mid-transaction or Redis was down.
A booking by ``hold_id`` skips the first layer: the slot is the caller's already, and a
storm of other bookings (refused by the second) must not keep its holder out.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, record
from amrutam.audit.log import entry as audit_entry
from amrutam.errors import Conflict, FieldError, InvalidInput, NotFound, PermissionDenied
from amrutam.infra.cache import Cache
from amrutam.infra.db import Database
from amrutam.infra.locks import slot_lock
from amrutam.infra.logs import get_logger
from amrutam.infra.metrics import HOLD_EVENTS, WAITLIST_EVENTS
from amrutam.infra.outbox import emit
from amrutam.jsonutil import dumps
from amrutam.pagination import Params
from amrutam.scheduling.availability import BY_START
from amrutam.scheduling.limits import BookingLimits
from amrutam.scheduling.schemas import (
    AppointmentQuery,
)
from amrutam.scheduling.slots import lock_slot, touch_slots
from amrutam.scheduling.waitlist import offer
from amrutam.timeutil import utcnow

log = get_logger(__name__)

_APPOINTMENT = "id, slot_id, doctor_id, patient_id, starts_at, ends_at, status, reason, created_at"


@dataclass(frozen=True, slots=True)
class Booking:
    id: uuid.UUID
    body: bytes
    created: bool


def _constraint(exc: asyncpg.PostgresError) -> str:
    return str(getattr(exc, "constraint_name", "") or "")


def _booking_conflict(exc: asyncpg.PostgresError) -> Conflict | InvalidInput:
    name = _constraint(exc)
    if name == "ex_appointments_patient_no_overlap":
        return Conflict("you already have an appointment at that time")
    if name == "uq_appointments_patient_idempotency":
        return InvalidInput(
            "this Idempotency-Key was already used for a different booking",
            [FieldError("Idempotency-Key", "already used for a different booking")],
        )
    if name == "ex_appointments_held_slot":
        return Conflict("this slot is held by another patient")
    return Conflict("this slot is already booked")


# A booking is one call of ``book_slot`` (migration 0010), which commits itself: it locks
# the slot, checks it, serialises the patient's bookings, counts them, and writes the
# appointment, the slot, the hold, the waitlist entry, the audit row and the outbox event.
# Its ``outcome`` is "booked", "replayed" (this Idempotency-Key's own booking of the slot,
# committed before) or a reason to refuse.
_BOOK = "SELECT * FROM book_slot($1, $2, $3, $4, $5, $6, $7, $8, $9::audit_logs, $10)"
_APPOINTMENT_FIELDS = tuple(_APPOINTMENT.split(", "))


def _refusal(row: asyncpg.Record, limits: BookingLimits) -> NotFound | Conflict:
    match row["outcome"]:
        case "no_slot":
            return NotFound("no such slot")
        case "not_open":
            return Conflict("this slot is not open")
        case "held":
            return Conflict("this slot is held by another patient")
        case "hold_expired":
            return Conflict("this hold has expired; book the slot by its slot_id")
        case "started":
            return Conflict("this slot has already started")
        case "total" | "with_doctor":
            refused = limits.refusal(row["total"], row["with_doctor"])
            if refused is not None:
                return refused
    raise AssertionError(f"book_slot answered {row['outcome']!r}")


class Scheduling:
    def __init__(
        self,
        db: Database,
        cache: Cache,
        redis: Redis,
        lock_ttl_ms: int,
        limits: BookingLimits | None = None,
        hold_ttl_s: int = 600,
    ) -> None:
        self._db = db
        self._cache = cache
        self._redis = redis
        self._lock_ttl_ms = lock_ttl_ms
        self._limits = limits or BookingLimits()
        self._hold_ttl = timedelta(seconds=hold_ttl_s)  # of the waitlist's offers

    # -- booking --------------------------------------------------------------------

    async def book(
        self,
        actor: Actor,
        *,
        slot_id: uuid.UUID | None = None,
        hold_id: uuid.UUID | None = None,
        reason: str | None,
        idempotency_key: str | None,
    ) -> Booking:
        """Book a slot, or the slot of the caller's hold; the result says whether the
        appointment was created just now.

        A retry with the Idempotency-Key of a booking that already committed (its
        response lost, Redis down) gets that same appointment back, not a 409.
        """
        if actor.role != "patient":
            raise PermissionDenied("only patients book appointments")
        if hold_id is not None:
            slot_id = await self._held_slot(actor.user_id, hold_id)
            lock: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
        elif slot_id is not None:
            lock = slot_lock(self._redis, str(slot_id), self._lock_ttl_ms)
        else:
            raise InvalidInput("name a slot_id or a hold_id", [FieldError("slot_id", "missing")])
        appointment_id = uuid.uuid4()
        audited = audit_entry(
            actor,
            Action.APPOINTMENT_BOOKED,
            "appointment",
            appointment_id,
            {"slot_id": str(slot_id)},
        )
        # One statement that commits itself. Cut off by an outage it is run again
        # (rides_out_outages): if it had committed, the rerun finds this Idempotency-Key's
        # booking and answers "replayed" with it, so nothing is booked twice.
        async with lock, self._db.connection() as conn:
            try:
                row = await conn.fetchrow(
                    _BOOK,
                    appointment_id,
                    slot_id,
                    hold_id is not None,
                    actor.user_id,
                    reason,
                    idempotency_key,
                    self._limits.total,
                    self._limits.per_doctor,
                    audited.row(),
                    uuid.uuid4(),
                )
            except (asyncpg.UniqueViolationError, asyncpg.ExclusionViolationError) as exc:
                raise _booking_conflict(exc) from exc
        outcome = row["outcome"]
        if outcome not in ("booked", "replayed"):
            raise _refusal(row, self._limits)
        body = dumps({name: row[name] for name in _APPOINTMENT_FIELDS})
        if outcome == "replayed":
            return Booking(row["id"], body, created=False)
        if row["took_offer"]:
            WAITLIST_EVENTS.labels("accepted").inc()
        if row["held_by"] is not None:
            HOLD_EVENTS.labels("converted").inc()
        await touch_slots(self._cache, row["doctor_id"], row["timezone"], [row["starts_at"]])
        return Booking(row["id"], body, created=True)

    async def _held_slot(self, patient_id: uuid.UUID | None, hold_id: uuid.UUID) -> uuid.UUID:
        """The slot of the caller's hold (NotFound for anyone else's)."""
        async with self._db.connection() as conn:
            hold = await conn.fetchrow(
                "SELECT slot_id FROM slot_holds WHERE id = $1 AND patient_id = $2",
                hold_id,
                patient_id,
            )
        if hold is None:
            raise NotFound("no such hold")
        slot_id: uuid.UUID = hold["slot_id"]
        return slot_id

    async def cancel(self, who: Actor, appointment_id: uuid.UUID) -> bytes:
        async with self._db.connection() as conn, conn.transaction():
            current = await conn.fetchrow(
                """
                SELECT a.status, a.slot_id, a.doctor_id, a.starts_at, d.timezone,
                    EXISTS (SELECT 1 FROM consultations c WHERE c.appointment_id = a.id) AS visited
                FROM appointments a JOIN doctors d ON d.user_id = a.doctor_id
                WHERE a.id = $1 AND (a.patient_id = $2 OR a.doctor_id = $2) FOR UPDATE OF a
                """,
                appointment_id,
                who.user_id,
            )
            if current is None:
                raise NotFound("no such appointment")
            if current["status"] != "booked":
                raise Conflict(f"this appointment is {current['status']}; it cannot be cancelled")
            if current["visited"]:
                raise Conflict("the consultation has started; the appointment cannot be cancelled")
            row = await conn.fetchrow(
                f"UPDATE appointments SET status = 'cancelled', updated_at = now() "
                f"WHERE id = $1 RETURNING {_APPOINTMENT}",
                appointment_id,
            )
            await conn.execute(
                "UPDATE availability_slots SET status = 'open' WHERE id = $1 AND status = 'booked'",
                current["slot_id"],
            )
            await record(conn, who, Action.APPOINTMENT_CANCELLED, "appointment", appointment_id)
            await emit(conn, "appointment.cancelled", appointment_id, _event(row))
            await offer(conn, current["slot_id"], self._hold_ttl)
        await touch_slots(
            self._cache, current["doctor_id"], current["timezone"], [current["starts_at"]]
        )
        return dumps(dict(row))

    async def reschedule(
        self, actor: Actor, appointment_id: uuid.UUID, new_slot_id: uuid.UUID
    ) -> bytes:
        """Move a booking to another slot of the same doctor, all or nothing."""
        patient_id = actor.user_id
        async with (
            slot_lock(self._redis, str(new_slot_id), self._lock_ttl_ms),
            self._db.connection() as conn,
            conn.transaction(),
        ):
            current = await conn.fetchrow(
                "SELECT status, slot_id, doctor_id, starts_at, EXISTS (SELECT 1 FROM "
                "consultations c WHERE c.appointment_id = appointments.id) AS visited "
                "FROM appointments WHERE id = $1 AND patient_id = $2 FOR UPDATE",
                appointment_id,
                patient_id,
            )
            if current is None:
                raise NotFound("no such appointment")
            if current["status"] != "booked":
                raise Conflict(f"this appointment is {current['status']}")
            if current["visited"]:
                raise Conflict("the consultation has started; the appointment cannot move")
            if current["slot_id"] == new_slot_id:
                raise Conflict("the appointment already holds this slot")
            target = await lock_slot(conn, new_slot_id)
            if target["doctor_id"] != current["doctor_id"]:
                raise InvalidInput(
                    "reschedule within the same doctor's slots",
                    [FieldError("slot_id", "belongs to another doctor")],
                )
            if target["status"] != "open":
                raise Conflict("this slot is not open")
            if target["held_by"] not in (None, patient_id):
                raise Conflict("this slot is held by another patient")
            if target["starts_at"] <= utcnow():
                raise Conflict("this slot has already started")
            try:
                row = await conn.fetchrow(
                    f"""
                        UPDATE appointments SET slot_id = $2, starts_at = $3, ends_at = $4,
                            updated_at = now()
                        WHERE id = $1 RETURNING {_APPOINTMENT}
                        """,
                    appointment_id,
                    new_slot_id,
                    target["starts_at"],
                    target["ends_at"],
                )
            except (asyncpg.UniqueViolationError, asyncpg.ExclusionViolationError) as exc:
                raise _booking_conflict(exc) from exc
            await conn.execute(
                "UPDATE availability_slots SET status = CASE WHEN id = $1 THEN 'booked' "
                "ELSE 'open' END WHERE id IN ($1, $2)",
                new_slot_id,
                current["slot_id"],
            )
            if target["held_by"] is not None:  # the caller's own hold: used
                await conn.execute(
                    "UPDATE slot_holds SET ended_at = now(), ended_as = 'booked' "
                    "WHERE slot_id = $1 AND ended_at IS NULL",
                    new_slot_id,
                )
                HOLD_EVENTS.labels("converted").inc()
            await record(
                conn,
                actor,
                Action.APPOINTMENT_RESCHEDULED,
                "appointment",
                appointment_id,
                {"from_slot_id": str(current["slot_id"]), "to_slot_id": str(new_slot_id)},
            )
            await emit(conn, "appointment.rescheduled", appointment_id, _event(row))
            await offer(conn, current["slot_id"], self._hold_ttl)
        await touch_slots(
            self._cache,
            target["doctor_id"],
            target["timezone"],
            [target["starts_at"], current["starts_at"]],
        )
        return dumps(dict(row))

    # -- reading appointments -------------------------------------------------------

    async def appointment(self, who: Actor, appointment_id: uuid.UUID) -> bytes:
        """One appointment (it carries the patient's reason): every read is audited."""
        async with self._db.connection() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_APPOINTMENT} FROM appointments WHERE id = $1", appointment_id
            )
            allowed = row is not None and (
                who.role == "admin" or who.user_id in (row["patient_id"], row["doctor_id"])
            )
            if allowed:
                await record(conn, who, Action.APPOINTMENT_VIEWED, "appointment", appointment_id)
        if row is None or not allowed:
            raise NotFound("no such appointment")
        return dumps(dict(row))

    async def appointments(
        self,
        who: Actor,
        query: AppointmentQuery,
        *,
        patient_id: uuid.UUID | None = None,
        doctor_id: uuid.UUID | None = None,
    ) -> bytes:
        """The caller's appointments, optionally of one other party. A doctor's are the
        ones they give, a patient's the ones they have; naming someone else in the
        caller's own place finds none. An admin may name either party (naming neither
        lists their own, as for anyone)."""
        named = {"patient_id": patient_id, "doctor_id": doctor_id}
        own = "doctor_id" if who.role == "doctor" else "patient_id"
        if who.role != "admin" or not any(named.values()):
            if named[own] not in (None, who.user_id):
                return dumps({"items": [], "next_cursor": None})
            named[own] = who.user_id
        p = Params()
        where = [f"{column} = {p(value)}" for column, value in named.items() if value]
        if query.status is not None:
            where.append(f"status = {p(query.status)}")
        if query.from_ is not None:
            where.append(f"starts_at >= {p(query.from_)}")
        if query.to is not None:
            where.append(f"starts_at < {p(query.to)}")
        sql = BY_START.select(_APPOINTMENT, "appointments", where, query.cursor, query.limit, p)
        async with self._db.connection() as conn:
            rows = await conn.fetch(sql, *p.values)
        return dumps(BY_START.page(rows, query.limit))


def _event(appointment: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "appointment_id": str(appointment["id"]),
        "patient_id": str(appointment["patient_id"]),
        "doctor_id": str(appointment["doctor_id"]),
        "starts_at": appointment["starts_at"].isoformat(),
    }
