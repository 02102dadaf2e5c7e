"""Doctor profiles and search, cached in Redis with explicit invalidation.

Reads are hot, so they run as plain SQL on the pool's asyncpg connection and are
serialised once, straight to the JSON bytes that are cached and served.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, record
from amrutam.doctors.schemas import ProfileIn, SearchQuery
from amrutam.errors import NotFound, PermissionDenied
from amrutam.infra.cache import Cache
from amrutam.infra.db import Database
from amrutam.jsonutil import dumps
from amrutam.pagination import Keyset, Params

PROFILE_TTL_S = 3600
SEARCH_TTL_S = 300
DOCTORS_GENERATION = "gen:doctors"

_PROFILE_COLUMNS = """
    user_id AS id, display_name AS full_name, specialty, languages, consultation_fee,
    currency, experience_years, rating::float8 AS rating, rating_count, city, timezone, bio,
    updated_at
"""
# Qualified columns: a bare "rating" would mean the rating::float8 output column, which no
# index serves. The cursor carries the row's output field.
_ORDERS = {
    sort: Keyset(
        f"doctors.{column}",
        kind,
        descending=descending,
        key="doctors.user_id",
        value_field=field,
    )
    for name, column, field, kind in (
        ("fee", "consultation_fee", "consultation_fee", int),
        ("rating", "rating", "rating", Decimal),
        ("experience", "experience_years", "experience_years", int),
    )
    for sort, descending in ((name, False), (f"-{name}", True))
}


def profile_key(doctor_id: uuid.UUID | str) -> str:
    return f"doctor:{doctor_id}"


def availability_generation(day: date) -> str:
    """Bumped when any slot on this (doctor-local) date opens or closes."""
    return f"gen:avail:{day.isoformat()}"


def hold_in_force(hold: str) -> str:
    """SQL: the ``slot_holds`` row named ``hold`` counts (scheduling/holds.py): it has not
    ended and not expired. Expiry needs no task to run. The database's own functions
    spell the same rule out (the hold trigger of migration 0007, ``book_slot`` of 0010):
    changing it here means a migration there."""
    return f"{hold}.ended_at IS NULL AND {hold}.expires_at > now()"


def bookable(slot: str) -> str:
    """SQL: the slot row named ``slot`` is open and nobody holds it."""
    return (
        f"{slot}.status = 'open' AND NOT EXISTS (SELECT 1 FROM slot_holds h "
        f"WHERE h.slot_id = {slot}.id AND {hold_in_force('h')})"
    )


class DoctorDirectory:
    def __init__(self, db: Database, cache: Cache) -> None:
        self._db = db
        self._cache = cache

    async def upsert_profile(self, actor: Actor, user_id: uuid.UUID, data: ProfileIn) -> bytes:
        async with self._db.connection() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                INSERT INTO doctors AS d (user_id, display_name, specialty, languages,
                    consultation_fee, currency, experience_years, city, timezone, bio)
                SELECT u.id, u.full_name, $2, $3, $4, $5, $6, $7, $8, $9
                FROM users u WHERE u.id = $1 AND u.role = 'doctor'
                ON CONFLICT (user_id) DO UPDATE SET
                    display_name = EXCLUDED.display_name, specialty = EXCLUDED.specialty,
                    languages = EXCLUDED.languages,
                    consultation_fee = EXCLUDED.consultation_fee,
                    currency = EXCLUDED.currency, experience_years = EXCLUDED.experience_years,
                    city = EXCLUDED.city, timezone = EXCLUDED.timezone, bio = EXCLUDED.bio,
                    updated_at = now()
                RETURNING {_PROFILE_COLUMNS}
                """,
                user_id,
                data.specialty,
                data.languages,
                data.consultation_fee,
                data.currency,
                data.experience_years,
                data.city,
                data.timezone,
                data.bio,
            )
            if row is None:
                raise PermissionDenied("only doctors have a profile")
            await record(conn, actor, Action.DOCTOR_PROFILE_UPDATED, "doctor", user_id)
        body = dumps(dict(row))
        await self._cache.invalidate(delete=[profile_key(user_id)], bump=[DOCTORS_GENERATION])
        return body

    async def profile(self, doctor_id: uuid.UUID) -> bytes:
        async def load() -> bytes:
            async with self._db.connection() as conn:
                row = await conn.fetchrow(
                    f"SELECT {_PROFILE_COLUMNS} FROM doctors WHERE user_id = $1", doctor_id
                )
            if row is None:
                raise NotFound("no such doctor")
            return dumps(dict(row))

        return await self._cache.fetch("profile", profile_key(doctor_id), PROFILE_TTL_S, load)

    async def timezone_of(self, doctor_id: uuid.UUID) -> str | None:
        async with self._db.connection() as conn:
            tz: str | None = await conn.fetchval(
                "SELECT timezone FROM doctors WHERE user_id = $1", doctor_id
            )
        return tz

    async def search(self, query: SearchQuery) -> bytes:
        generations = [DOCTORS_GENERATION]
        if query.available_on is not None:
            generations.append(availability_generation(query.available_on))
        return await self._cache.fetch(
            "search", query.cache_key, SEARCH_TTL_S, lambda: self._search(query), generations
        )

    async def _search(self, query: SearchQuery) -> bytes:
        sql, args = build_search(query)
        async with self._db.connection() as conn:
            rows = await conn.fetch(sql, *args)
        return dumps(_ORDERS[query.sort].page(rows, query.limit))


def build_search(query: SearchQuery) -> tuple[str, list[Any]]:
    """The search as one parameterised statement whose every filter an index serves."""
    arg = Params()
    where: list[str] = []
    if query.specialty:
        where.append(f"specialty = {arg(query.specialty)}")
    if query.language:
        where.append(f"languages @> ARRAY[{arg(query.language)}]::text[]")
    if query.city:
        where.append(f"lower(city) = lower({arg(query.city)})")
    if query.min_fee is not None:
        where.append(f"consultation_fee >= {arg(query.min_fee)}")
    if query.max_fee is not None:
        where.append(f"consultation_fee <= {arg(query.max_fee)}")
    if query.min_rating is not None:
        where.append(f"rating >= {arg(Decimal(str(query.min_rating)))}")
    if query.q:
        escaped = query.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(f"lower(display_name || ' ' || specialty) LIKE {arg('%' + escaped + '%')}")
    if query.available_on is not None:
        day, next_day = arg(query.available_on), arg(query.available_on + timedelta(days=1))
        where.append(
            f"""EXISTS (SELECT 1 FROM availability_slots s
                WHERE s.doctor_id = doctors.user_id AND {bookable("s")}
                  AND s.starts_at >= timezone(doctors.timezone, {day}::date::timestamp)
                  AND s.starts_at < timezone(doctors.timezone, {next_day}::date::timestamp)
                  AND s.starts_at > now())"""
        )
    order = _ORDERS[query.sort]
    sql = order.select(_PROFILE_COLUMNS, "doctors", where, query.cursor, query.limit, arg)
    return sql, arg.values
