"""The slot row, locked: where booking, holds and waitlist offers all start; and the
caches every change to a slot refreshes once it has committed (``touch_slots``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg

from amrutam.doctors.service import availability_generation, hold_in_force
from amrutam.errors import NotFound
from amrutam.infra.cache import Cache
from amrutam.infra.logs import get_logger

log = get_logger(__name__)


def slots_generation(doctor_id: uuid.UUID) -> str:
    """Bumped when any of the doctor's slots opens, closes, is held or let go."""
    return f"gen:slots:{doctor_id}"


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


async def touch_slots(
    cache: Cache, doctor_id: uuid.UUID, timezone: str, instants: Iterable[datetime]
) -> None:
    """After a commit that changed the doctor's slots starting at ``instants``: their
    listings, and the (doctor-local) days a search by availability filters on. Best
    effort by design (the cache bounds staleness itself); it must never turn a commit
    into an error."""
    bumps = [slots_generation(doctor_id)]
    try:
        zone = ZoneInfo(timezone)
        days = {instant.astimezone(zone).date() for instant in instants}
    except (ValueError, OverflowError, OSError) as exc:
        log.warning("scheduling.cache_touch_failed", error=repr(exc))
    else:
        bumps += [availability_generation(day) for day in sorted(days)]
    await cache.invalidate(bump=bumps)
