"""The slot row, locked: where booking, holds and waitlist offers all start."""

from __future__ import annotations

import uuid

import asyncpg

from amrutam.doctors.service import hold_in_force
from amrutam.errors import NotFound


async def lock_slot(conn: asyncpg.Connection, slot_id: uuid.UUID) -> asyncpg.Record:
    """The slot row, locked for this transaction, with its doctor's time zone and who
    holds it (if anyone)."""
    slot = await conn.fetchrow(
        f"""
        SELECT s.doctor_id, s.starts_at, s.ends_at, s.status, d.timezone,
            (SELECT h.patient_id FROM slot_holds h
             WHERE h.slot_id = s.id AND {hold_in_force("h")}) AS held_by
        FROM availability_slots s JOIN doctors d ON d.user_id = s.doctor_id
        WHERE s.id = $1 FOR UPDATE OF s
        """,
        slot_id,
    )
    if slot is None:
        raise NotFound("no such slot")
    return slot
