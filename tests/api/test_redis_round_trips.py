"""How many times a request talks to Redis, counted by Redis itself (MONITOR, on a Redis of
the test's own): the rate-limit hit rides on the request's first script, and the check
that the caller's session has not ended rides on the hit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis

from amrutam.dev.servers import RedisServer, free_port
from tests.factories import book, make_doctor, make_slots
from tests.helpers import api_env, assert_problem, bearer, register
from tests.servers import ApiServer


@pytest.fixture(scope="module")
def counted_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis-round-trips", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def counted_api(database_url: str, counted_redis: RedisServer) -> Iterator[ApiServer]:
    env = api_env(database_url, counted_redis.url(), rate_limit_anonymous="8/minute")
    server = ApiServer(env, workers=1).start()
    yield server
    server.stop()


@asynccontextmanager
async def round_trips(redis_url: str, whole: bool = False) -> AsyncIterator[list[str]]:
    """The commands clients send while the block runs (not those scripts run inside):
    their names, or ``whole`` commands with their arguments."""
    seen: list[str] = []
    async with Redis.from_url(redis_url) as redis, redis.monitor() as monitor:

        async def listen() -> None:
            async for command in monitor.listen():
                if command["client_type"] != "lua":
                    line = command["command"]
                    seen.append(line if whole else line.split()[0].upper())

        listening = asyncio.create_task(listen())
        await asyncio.sleep(0.1)
        try:
            yield seen
        finally:
            await asyncio.sleep(0.2)  # what was sent has reached MONITOR
            listening.cancel()


async def _count(redis_url: str, request: Callable[[], Awaitable[Any]]) -> list[str]:
    return (await _count_and_answer(redis_url, request))[0]


async def _count_and_answer(
    redis_url: str, request: Callable[[], Awaitable[Any]]
) -> tuple[list[str], Any]:
    async with round_trips(redis_url) as seen:
        answer = await request()
    return seen, answer


async def test_a_cached_read_is_one_round_trip(
    counted_api: ApiServer, counted_redis: RedisServer
) -> None:
    async with httpx.AsyncClient(
        base_url=counted_api.url, headers={"X-Forwarded-For": "10.66.0.1"}
    ) as http:
        doctor = await make_doctor(http, specialty="Round Trips")
        tokens = await register(http)
        assert (await http.get("/v1/doctors?specialty=Warm")).status_code == 200  # loads scripts
    search = "/v1/doctors?specialty=Round%20Trips"
    async with httpx.AsyncClient(
        base_url=counted_api.url, headers={"X-Forwarded-For": "10.66.0.2"}
    ) as http:
        # A miss: the read (carrying the hit), the recompute lock, then the value stored
        # and the lock released in one script.
        filled = await _count(counted_redis.url(), lambda: http.get(search))
        assert filled == ["EVALSHA", "SET", "EVALSHA"], filled
        assert (await http.get(f"/v1/doctors/{doctor['id']}")).status_code == 200
        remaining = []
        for path in (search, f"/v1/doctors/{doctor['id']}"):
            seen, answer = await _count_and_answer(counted_redis.url(), lambda p=path: http.get(p))
            assert seen == ["EVALSHA"], (path, seen)
            remaining.append(int(answer.headers["ratelimit"].split(";r=")[1].split(";")[0]))
        # Each hit a cache read carried was counted once, and reported (8 a minute: two
        # reads filled the caches).
        assert remaining == [5, 4]

        # Any other request: the hit alone.
        me = await _count(
            counted_redis.url(), lambda: http.get("/v1/auth/me", headers=bearer(tokens))
        )
        assert me == ["EVALSHA"]
        # The open-slot listing is a cached read too. The doctor's own view depends on
        # the caller's session, so its hit (with the session check) goes first, alone;
        # that view is not cached.
        await make_slots(http, doctor)
        slots = f"/v1/doctors/{doctor['id']}/slots"
        assert (await http.get(slots)).status_code == 200
        assert await _count(counted_redis.url(), lambda: http.get(slots)) == ["EVALSHA"]
        own = await _count(
            counted_redis.url(),
            lambda: http.get(f"{slots}?status=all", headers=bearer(doctor)),
        )
        assert own == ["EVALSHA"]


async def test_a_cached_read_over_the_limit_is_refused_before_it_is_computed(
    counted_api: ApiServer,
) -> None:
    async with httpx.AsyncClient(
        base_url=counted_api.url, headers={"X-Forwarded-For": "10.66.0.3"}
    ) as http:
        # Reads the cache cannot answer still count: 8 invalid queries spend the limit.
        for _ in range(8):
            assert_problem(await http.get("/v1/doctors?min_fee=lots"), 422)
        before = (await http.get("/metrics")).text
        refused = await http.get("/v1/doctors?specialty=Never%20Cached")
        assert_problem(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit"].startswith('"anonymous";r=0;')
        after = (await http.get("/metrics")).text
    misses = 'amrutam_cache_requests_total{cache="search",result="miss"}'
    assert _value(before, misses) == _value(after, misses)


def _value(metrics: str, series: str) -> float:
    return next(
        (float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(series)),
        0.0,
    )


async def test_a_booking_claims_its_key_and_counts_its_hit_in_one_round_trip(
    counted_api: ApiServer, counted_redis: RedisServer
) -> None:
    async with httpx.AsyncClient(
        base_url=counted_api.url, headers={"X-Forwarded-For": "10.66.0.4"}
    ) as http:
        doctor = await make_doctor(http)
        first, slot = await make_slots(http, doctor, count=2)
        patient = bearer(await register(http, "patient"))
        assert (await book(http, patient, first["id"])).status_code == 201  # scripts loaded
        booked: list[httpx.Response] = []

        async def booking() -> None:
            booked.append(await book(http, patient, slot["id"], key="round-trips"))

        seen = await _count(counted_redis.url(), booking)
        assert booked[0].status_code == 201, booked[0].text
        # The hit with the idempotency claim, the slot lock, its release, the cache
        # generation bump (a script), the stored response.
        assert seen == ["EVALSHA", "SET", "EVALSHA", "EVALSHA", "SET"], seen

        replay = await _count(counted_redis.url(), booking)
        assert booked[1].headers["idempotent-replayed"] == "true"
        assert replay == ["EVALSHA"]


async def test_the_session_check_rides_on_the_rate_limit_hit(
    counted_api: ApiServer, counted_redis: RedisServer
) -> None:
    async with httpx.AsyncClient(
        base_url=counted_api.url, headers={"X-Forwarded-For": "10.66.0.5"}
    ) as http:
        tokens = await register(http)
        session = jwt.decode(tokens["access_token"], options={"verify_signature": False})["fam"]
        async with round_trips(counted_redis.url(), whole=True) as seen:
            assert (await http.get("/v1/auth/me", headers=bearer(tokens))).status_code == 200
        assert len(seen) == 1
        command = seen[0].split()
        assert command[0] == "EVALSHA"
        assert f"revoked:{session}" in command, seen

        assert (await http.post("/v1/auth/logout", headers=bearer(tokens))).status_code == 204
        async with round_trips(counted_redis.url()) as after:
            assert_problem(await http.get("/v1/auth/me", headers=bearer(tokens)), 401)
        assert after == ["EVALSHA"]  # "ended", from Redis alone
