"""Under any concurrency and any state of Redis, a slot gets at most one booking."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from amrutam.dev.servers import RedisServer, free_port
from tests.factories import book, booked_count, make_doctor, make_patients, make_slots, pg_dsn
from tests.helpers import api_env, random_ip
from tests.servers import ApiServer

STORM = 300


async def _storm(
    url: str, slot_id: str, patients: list[dict[str, str]], spread_s: float = 0.0
) -> Counter[int]:
    """Every patient tries the slot at once, or spread evenly over ``spread_s``."""
    limits = httpx.Limits(max_connections=len(patients))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:

        async def attempt(i: int, patient: dict[str, str]) -> httpx.Response:
            await asyncio.sleep(spread_s * i / len(patients))
            return await book(http, patient, slot_id)

        responses = await asyncio.gather(*(attempt(i, p) for i, p in enumerate(patients)))
    return Counter(r.status_code for r in responses)


def _assert_one_winner(statuses: Counter[int]) -> None:
    assert statuses[201] == 1, statuses
    assert set(statuses) <= {201, 409, 429}, statuses


async def _fresh_slot(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, headers={"X-Forwarded-For": random_ip()}) as http:
        doctor = await make_doctor(http)
        return str((await make_slots(http, doctor))[0]["id"])


async def test_300_concurrent_bookings_one_winner(api: ApiServer, database_url: str) -> None:
    slot_id = await _fresh_slot(api.url)
    patients = await make_patients(database_url, STORM)
    statuses = await _storm(api.url, slot_id, patients)
    _assert_one_winner(statuses)
    assert statuses[429] > 0, "the Redis lock should shed most of the contention"
    assert await booked_count(database_url, slot_id) == 1


@pytest.fixture(scope="module")
def own_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis-storm", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def storm_api(database_url: str, own_redis: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(api_env(database_url, own_redis.url())).start()
    yield server
    server.stop()


async def test_storm_with_redis_down_from_the_start(
    storm_api: ApiServer, own_redis: RedisServer, database_url: str
) -> None:
    slot_id = await _fresh_slot(storm_api.url)
    patients = await make_patients(database_url, STORM)
    own_redis.stop()
    try:
        statuses = await _storm(storm_api.url, slot_id, patients)
    finally:
        own_redis.start()
    _assert_one_winner(statuses)
    assert statuses[429] == 0  # no lock to contend on: the database said 409
    assert await booked_count(database_url, slot_id) == 1


async def test_storm_with_redis_stopping_midway(
    storm_api: ApiServer, own_redis: RedisServer, database_url: str
) -> None:
    slot_id = await _fresh_slot(storm_api.url)
    patients = await make_patients(database_url, STORM)

    async def stop_soon() -> None:
        await asyncio.sleep(0.05)
        await asyncio.to_thread(own_redis.stop)

    try:
        statuses, _ = await asyncio.gather(_storm(storm_api.url, slot_id, patients), stop_soon())
    finally:
        own_redis.start()
    _assert_one_winner(statuses)
    assert await booked_count(database_url, slot_id) == 1


@pytest.fixture(scope="module")
def tiny_lock_api(database_url: str, redis_server: RedisServer) -> Iterator[ApiServer]:
    server = ApiServer(api_env(database_url, redis_server.url(), slot_lock_ttl_ms="20")).start()
    yield server
    server.stop()


async def test_lock_expiring_mid_transaction_still_one_winner(
    tiny_lock_api: ApiServer, database_url: str
) -> None:
    """Hold the slot's row lock from outside so every transaction outlives its 20 ms lock."""
    slot_id = await _fresh_slot(tiny_lock_api.url)
    patients = await make_patients(database_url, 60)
    blocker = await asyncpg.connect(pg_dsn(database_url))
    try:
        async with blocker.transaction():
            await blocker.execute(
                "SELECT 1 FROM availability_slots WHERE id = $1 FOR UPDATE", uuid.UUID(slot_id)
            )
            # One attempt every ~17 ms: each finds the previous 20 ms lock lapsed, takes its
            # own, and queues behind the row lock; none of them still holds a Redis lock.
            storm = asyncio.ensure_future(
                _storm(tiny_lock_api.url, slot_id, patients, spread_s=1.0)
            )
            await asyncio.sleep(1.5)
            assert not storm.done()
        statuses = await storm
    finally:
        await blocker.close()
    _assert_one_winner(statuses)
    # Several requests got past their expired Redis locks: the database decided.
    assert statuses[409] >= 2, statuses
    assert await booked_count(database_url, slot_id) == 1
    metrics = httpx.get(tiny_lock_api.url + "/metrics").text
    assert 'amrutam_slot_lock_total{outcome="expired"}' in metrics
