"""Availability: the slots a doctor publishes, lists and withdraws.

Slots are written here and booked in ``service.py``; every change refreshes the
doctor's cached listings and the days it touched (``slots.touch_slots``). The public
listing (open slots) is cached until the next change, and no longer than its first
slot's start or the first expiry of a hold that hides one of the doctor's slots.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, record
from amrutam.auth.tokens import Principal
from amrutam.doctors.service import bookable
from amrutam.errors import Conflict, FieldError, InvalidInput, NotFound, PermissionDenied
from amrutam.infra.cache import Cache, Expiring
from amrutam.infra.db import Database
from amrutam.jsonutil import dumps
from amrutam.pagination import Keyset, Params
from amrutam.scheduling.rules import slots_of
from amrutam.scheduling.schemas import ExplicitSlots, SlotQuery, WeeklyRule
from amrutam.scheduling.slots import slots_generation, touch_slots
from amrutam.scheduling.waitlist import offer
from amrutam.timeutil import utcnow

SLOT_COLUMNS = "id, doctor_id, starts_at, ends_at, status"
# What a slot row ``s`` shows: its status, or ``held`` while an open slot is held.
SLOT_STATUS = f"CASE WHEN {bookable('s')} OR s.status <> 'open' THEN s.status ELSE 'held' END"
BY_START = Keyset("starts_at")
SLOTS_TTL_S = 300
# How long an open-slot listing stays true without a change: until its first slot
# starts (when it lists from now) or a hold on one of the doctor's slots expires.
_OPEN_FOR = """
SELECT extract(epoch FROM least(min(expires_at), $2) - clock_timestamp())::float8
FROM slot_holds WHERE doctor_id = $1 AND ended_at IS NULL AND expires_at > now()
"""


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
        await touch_slots(self._cache, doctor_id, timezone, (s for s, _ in times))
        return dumps({"items": [dict(r) for r in sorted(rows, key=lambda r: r["starts_at"])]})

    async def delete_slot(self, actor: Actor, slot_id: uuid.UUID) -> None:
        doctor_id = actor.user_id
        async with self._db.connection() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                SELECT {SLOT_STATUS} AS status, s.doctor_id, s.starts_at, d.timezone
                FROM availability_slots s
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
        await touch_slots(self._cache, row["doctor_id"], row["timezone"], [row["starts_at"]])

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
        if query.status != "open":  # the doctor's own view: not cached
            page = await self.slots(
                doctor_id,
                None if query.status == "all" else (query.status,),
                query.from_,
                query.to,
                query.cursor,
                query.limit,
                viewer,
            )
            return dumps(page)

        async def load() -> Expiring | bytes:
            async with self._db.connection() as conn:
                page = await self._page(
                    conn, doctor_id, ("open",), query.from_, query.to, query.cursor, query.limit
                )
                first = page["items"][0]["starts_at"] if page["items"] else None
                seconds = await conn.fetchval(
                    _OPEN_FOR, doctor_id, first if query.from_ is None else None
                )
            return Expiring.within(dumps(page), seconds)

        key = ":".join(
            (
                f"slots:{doctor_id}",
                query.from_.isoformat() if query.from_ else "",
                query.to.isoformat() if query.to else "",
                str(query.limit),
                query.cursor or "",
            )
        )
        return await self._cache.fetch(
            "slots", key, SLOTS_TTL_S, load, generations=[slots_generation(doctor_id)]
        )

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
        async with self._db.connection() as conn:
            return await self._page(conn, doctor_id, statuses, from_, to, cursor, limit)

    @staticmethod
    async def _page(
        conn: asyncpg.Connection,
        doctor_id: uuid.UUID,
        statuses: tuple[str, ...] | None,
        from_: datetime | None,
        to: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> dict[str, Any]:
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
        rows = await conn.fetch(sql, *p.values)
        if not rows and not await conn.fetchval(
            "SELECT 1 FROM doctors WHERE user_id = $1", doctor_id
        ):
            raise NotFound("no such doctor")
        return BY_START.page(rows, limit)
