"""The caps against slot hoarding: how many upcoming bookings and holds in force one
patient may have together, in all and with one doctor (G1, G2: holds did not count),
and how soon a patient may hold again a slot they let go of."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from amrutam.errors import Busy, Conflict


@dataclass(frozen=True, slots=True)
class BookingLimits:
    """How many upcoming bookings and holds in force, together, one patient may have: in
    all, and with one doctor (slot hoarding)."""

    total: int = 10
    per_doctor: int = 3

    def refusal(self, total: int, with_doctor: int) -> Conflict | None:
        """The cap a new booking or hold would cross, said as the problem's detail."""
        if total >= self.total:
            return Conflict(
                f"you already have {total} upcoming appointments and holds; "
                f"at most {self.total} at a time"
            )
        if with_doctor >= self.per_doctor:
            return Conflict(
                f"you already have {with_doctor} upcoming appointments and holds with this "
                f"doctor; at most {self.per_doctor} with one doctor"
            )
        return None


async def lock_patient(conn: asyncpg.Connection, patient_id: uuid.UUID | None) -> None:
    """Serialise what counts toward a patient's caps, until the transaction ends: the
    lock ``book_slot`` takes for its count (migration 0010)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('booking:' || $1::uuid::text, 0))",
        patient_id,
    )


async def check_hold(
    conn: asyncpg.Connection,
    limits: BookingLimits,
    cooldown_s: int,
    patient_id: uuid.UUID | None,
    slot_id: uuid.UUID,
    doctor_id: uuid.UUID,
) -> None:
    """Refuse a new hold that would cross a cap or renew one the patient just let go of.

    Under the patient's booking lock (the one ``book_slot`` takes), so that holds and
    bookings sent at once are counted one after the other. The caller's hold with this
    doctor is replaced by the new one, so it does not count."""
    await lock_patient(conn, patient_id)
    counts = await conn.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE doctor_id = $2) AS with_doctor "
        "FROM (SELECT doctor_id FROM appointments WHERE patient_id = $1 AND status = 'booked' "
        "      AND starts_at > now() "
        "      UNION ALL "
        "      SELECT doctor_id FROM slot_holds WHERE patient_id = $1 AND ended_at IS NULL "
        "      AND expires_at > now() AND doctor_id <> $2) c",
        patient_id,
        doctor_id,
    )
    refused = limits.refusal(counts["total"], counts["with_doctor"])
    if refused is not None:
        raise refused
    # Released, replaced or expired: the same slot again only after the cool-down, or a
    # hold would be renewed for ever.
    wait = await conn.fetchval(
        "SELECT ceil(extract(epoch FROM max(ended_at) + make_interval(secs => $3) - now())) "
        "FROM slot_holds WHERE slot_id = $1 AND patient_id = $2 AND ended_as <> 'booked' "
        "AND ended_at > now() - make_interval(secs => $3)",
        slot_id,
        patient_id,
        cooldown_s,
    )
    if wait is not None:
        raise Busy(
            f"you held this slot a moment ago; you may hold it again in {int(wait)} s",
            max(1, int(wait)),
        )
