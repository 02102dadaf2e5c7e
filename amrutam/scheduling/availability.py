"""Availability: the slots a doctor publishes, lists and withdraws.

Slots are written here and booked in ``service.py``; both bump the cache generation of
each local day whose availability changed (``touch_dates``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, record
from amrutam.auth.tokens import Principal
from amrutam.doctors.service import availability_generation, bookable
from amrutam.errors import Conflict, FieldError, InvalidInput, NotFound, PermissionDenied
from amrutam.infra.cache import Cache
from amrutam.infra.db import Database
from amrutam.infra.logs import get_logger
from amrutam.jsonutil import dumps
from amrutam.pagination import Keyset, Params
from amrutam.scheduling.rules import slots_of
from amrutam.scheduling.schemas import ExplicitSlots, SlotQuery, WeeklyRule
from amrutam.scheduling.waitlist import offer
from amrutam.timeutil import utcnow

log = get_logger(__name__)

SLOT_COLUMNS = "id, doctor_id, starts_at, ends_at, status"
# What a slot row ``s`` shows: its status, or ``held`` while an open slot is held.
SLOT_STATUS = f"CASE WHEN {bookable('s')} OR s.status <> 'open' THEN s.status ELSE 'held' END"
BY_START = Keyset("starts_at")


class Availability:
    def __init__(self, db: Database, cache: Cache, hold_ttl_s: int = 600) -> None:
        self._db = db
        self._cache = cache
        self._hold_ttl = timedelta(seconds=hold_ttl_s)  # of the waitlist's offers

    async def publish(
        self,
        actor: Actor,
        availability: ExplicitSlots | WeeklyRule,
        *,
        doctor_id: uuid.UUID | None = None,
    ) -> bytes:
        """Open slots: explicit ones, or a weekly rule expanded in the doctor's zone.

        A doctor publishes their own availability; the platform (demo data) anyone's.
        All or nothing: one overlapping slot refuses the whole request.
        """
        doctor_id = doctor_id or actor.user_id
        if doctor_id is None or (actor.role != "system" and actor.user_id != doctor_id):
            raise PermissionDenied("doctors publish their own availability")
        if isinstance(availability, ExplicitSlots):
            times = [(s.starts_at, s.ends_at) for s in availability.slots]
        else:
            times = slots_of(availability)
        if not times:
            raise InvalidInput("no slots to create", [FieldError("slots", "nothing to create")])
        now = utcnow()
        if any(start <= now for start, _ in times):
            raise InvalidInput(
                "slots must start in the future", [FieldError("slots", "a slot starts in the past")]
            )
        ids = [uuid.uuid4() for _ in times]
        async with self._db.connection() as conn, conn.transaction():
            timezone = await conn.fetchval(
                "SELECT timezone FROM doctors WHERE user_id = $1", doctor_id
            )
            if timezone is None:
                raise Conflict("publish your doctor profile before your availability")
            try:
                rows = await conn.fetch(
                    f"""
                    INSERT INTO availability_slots (id, doctor_id, starts_at, ends_at)
                    SELECT id, $1, s, e
                    FROM unnest($2::uuid[], $3::timestamptz[], $4::timestamptz[]) AS t(id, s, e)
                    RETURNING {SLOT_COLUMNS}
                    """,
                    doctor_id,
                    ids,
                    [s for s, _ in times],
                    [e for _, e in times],
                )
            except asyncpg.ExclusionViolationError as exc:
                raise Conflict(
                    "a slot overlaps another slot of yours; nothing was created"
                ) from exc
            await record(
                conn, actor, Action.SLOT_CREATED, "doctor", doctor_id, {"count": len(rows)}
            )
            # New slots go to the doctor's waitlist first, earliest slot first.
            waiting = await conn.fetchval(
                "SELECT count(*) FROM waitlist_entries WHERE doctor_id = $1 AND status = 'waiting'",
                doctor_id,
            )
            for row in sorted(rows, key=lambda r: r["starts_at"]):
                if waiting == 0:
                    break
                if await offer(conn, row["id"], self._hold_ttl) is not None:
                    waiting -= 1
        await touch_dates(self._cache, timezone, (s for s, _ in times))
        return dumps({"items": [dict(r) for r in sorted(rows, key=lambda r: r["starts_at"])]})

    async def delete_slot(self, actor: Actor, slot_id: uuid.UUID) -> None:
        doctor_id = actor.user_id
        async with self._db.connection() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                SELECT {SLOT_STATUS} AS status, s.starts_at, d.timezone FROM availability_slots s
                JOIN doctors d ON d.user_id = s.doctor_id
                WHERE s.id = $1 AND s.doctor_id = $2 FOR UPDATE OF s
                """,
                slot_id,
                doctor_id,
            )
            if row is None:
                raise NotFound("no such slot")
            if row["status"] != "open":
                raise Conflict(f"only an open slot can be deleted; this one is {row['status']}")
            await conn.execute("DELETE FROM availability_slots WHERE id = $1", slot_id)
            await record(conn, actor, Action.SLOT_DELETED, "slot", slot_id)
        await touch_dates(self._cache, row["timezone"], [row["starts_at"]])

    async def has_future_slots(self, doctor_id: uuid.UUID) -> bool:
        async with self._db.connection() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM availability_slots WHERE doctor_id = $1 AND starts_at > now() "
                "LIMIT 1",
                doctor_id,
            )
        return found is not None

    async def list_slots(
        self, doctor_id: uuid.UUID, query: SlotQuery, viewer: Principal | None
    ) -> bytes:
        statuses = None if query.status == "all" else (query.status,)
        page = await self.slots(
            doctor_id, statuses, query.from_, query.to, query.cursor, query.limit, viewer
        )
        return dumps(page)

    async def slots(
        self,
        doctor_id: uuid.UUID,
        statuses: tuple[str, ...] | None,
        from_: datetime | None,
        to: datetime | None,
        cursor: str | None,
        limit: int,
        viewer: Principal | None,
    ) -> dict[str, Any]:
        """A page of the doctor's slots starting in ``from_`` (default now) .. ``to``,
        earliest first, in the ``statuses`` they show (open, held, booked, blocked;
        None: all). Anyone sees the open ones; only the doctor sees the others."""
        if statuses != ("open",) and (viewer is None or viewer.user_id != doctor_id):
            raise PermissionDenied("only the doctor sees booked slots")
        p = Params()
        where = [f"doctor_id = {p(doctor_id)}", f"starts_at >= {p(from_ or utcnow())}"]
        if statuses == ("open",):  # bookable now: open and not held
            where.append(bookable("s"))
        elif statuses is not None:
            where.append(f"({SLOT_STATUS}) = ANY({p(list(statuses))}::text[])")
        if to is not None:
            where.append(f"starts_at < {p(to)}")
        sql = BY_START.select(
            f"id, doctor_id, starts_at, ends_at, {SLOT_STATUS} AS status",
            "availability_slots s",
            where,
            cursor,
            limit,
            p,
        )
        async with self._db.connection() as conn:
            rows = await conn.fetch(sql, *p.values)
            if not rows and not await conn.fetchval(
                "SELECT 1 FROM doctors WHERE user_id = $1", doctor_id
            ):
                raise NotFound("no such doctor")
        return BY_START.page(rows, limit)


async def touch_dates(cache: Cache, timezone: str, instants: Iterable[datetime]) -> None:
    """After a commit: the days whose availability changed. Best effort by design
    (the cache bounds staleness itself); it must never turn a commit into an error."""
    try:
        zone = ZoneInfo(timezone)
        days = {instant.astimezone(zone).date() for instant in instants}
    except (ValueError, OverflowError, OSError) as exc:
        log.warning("scheduling.cache_touch_failed", error=repr(exc))
        return
    await cache.invalidate(bump=[availability_generation(day) for day in sorted(days)])
