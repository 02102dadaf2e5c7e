"""The common doctor searches use indexes: no sequential scan of 20k doctors."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from amrutam.dev.scale import copy_doctors
from amrutam.dev.servers import PostgresServer
from amrutam.doctors.schemas import SearchQuery
from amrutam.doctors.service import build_search
from amrutam.infra.db import SESSION_SETTINGS
from amrutam.infra.migrate import upgrade
from tests.factories import pg_dsn

DOCTORS = 20_000
SPECIALTIES = [f"specialty-{i}" for i in range(30)]
CITIES = [f"City{i}" for i in range(60)]
LANGUAGES = ["english", "hindi", "tamil", "telugu", "marathi", "bengali", "kannada", "urdu"]


@pytest.fixture(scope="module")
def plans_dsn(postgres: PostgresServer) -> str:
    postgres.create_database("amrutam_plans")
    url = postgres.url("amrutam_plans")
    upgrade(url)

    async def load() -> None:
        connection = await asyncpg.connect(pg_dsn(url))
        try:
            if not await connection.fetchval("SELECT count(*) FROM doctors"):
                await _load(connection)
        finally:
            await connection.close()

    asyncio.run(load())
    return pg_dsn(url)


@pytest.fixture
async def conn(plans_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(plans_dsn, server_settings=SESSION_SETTINGS)
    yield connection
    await connection.close()


async def _load(conn: asyncpg.Connection) -> None:
    rng = random.Random(7)
    ids = [uuid.uuid4() for _ in range(DOCTORS)]
    await conn.copy_records_to_table(
        "users",
        records=[
            (i, f"d-{i.hex}@example.com", "!", f"Dr {rng.choice('ABCDEFGH')}{n}", "doctor")
            for n, i in enumerate(ids)
        ],
        columns=["id", "email", "password_hash", "full_name", "role"],
    )
    await copy_doctors(
        conn,
        [
            (
                i,
                f"Dr Name{n}",
                rng.choice(SPECIALTIES),
                rng.sample(LANGUAGES, 2),
                rng.randrange(20_000, 200_000, 500),
                rng.randrange(0, 40),
                round(rng.uniform(2.5, 5.0), 2),
                rng.choice(CITIES),
                "Asia/Kolkata",
            )
            for n, i in enumerate(ids)
        ],
    )
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    await conn.copy_records_to_table(
        "availability_slots",
        records=[
            (uuid.uuid4(), doctor, base + timedelta(hours=h), base + timedelta(hours=h, minutes=30))
            for doctor in ids[:5000]
            for h in range(0, 24 * 7, 8)
        ],
        columns=["id", "doctor_id", "starts_at", "ends_at"],
    )
    await conn.execute("ANALYZE")


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


QUERIES = {
    "specialty, best rated": {"specialty": "specialty-3"},
    "specialty by fee in range": {
        "specialty": "specialty-3",
        "sort": "fee",
        "min_fee": 50_000,
        "max_fee": 90_000,
    },
    "specialty in a city": {"specialty": "specialty-3", "city": "city7"},
    "by language": {"language": "tamil", "sort": "-rating"},
    "text": {"q": "name1234"},
    "everyone, best rated": {},
    "cheapest first": {"sort": "fee"},
    "most experienced": {"sort": "-experience", "specialty": "specialty-9"},
    "available on a day": {
        "specialty": "specialty-3",
        "available_on": (date.today() + timedelta(days=2)).isoformat(),
    },
}


@pytest.mark.parametrize("name", list(QUERIES))
async def test_common_searches_use_indexes(conn: asyncpg.Connection, name: str) -> None:
    sql, args = build_search(SearchQuery.model_validate(QUERIES[name]))
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    plan = orjson.loads(raw)[0]["Plan"]
    scans = _scans(plan)
    assert ("Seq Scan", "doctors") not in scans, (name, scans)
    assert ("Seq Scan", "availability_slots") not in scans, (name, scans)
    assert any(relation == "doctors" for _, relation in scans), scans
