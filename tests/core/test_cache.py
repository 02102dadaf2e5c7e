"""The read-through cache against real Redis: one recompute per key under a stampede."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from amrutam.dev.servers import RedisServer, free_port
from amrutam.infra.cache import Cache, Expiring


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url())
    yield client
    await client.aclose()


async def test_stampede_recomputes_once_across_processes(redis: Redis) -> None:
    calls = 0

    async def slow_source() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return b'{"answer": 42}'

    # Two Cache objects stand for two API processes sharing one Redis.
    caches = [Cache(redis), Cache(redis)]
    key = f"test:{uuid.uuid4()}"
    results = await asyncio.gather(
        *(caches[i % 2].fetch("test", key, 60, slow_source) for i in range(100))
    )
    assert set(results) == {b'{"answer": 42}'}
    assert calls == 1


async def test_generation_bump_makes_old_entries_unreachable(redis: Redis) -> None:
    cache, key, gen = Cache(redis), f"test:{uuid.uuid4()}", f"gen:test:{uuid.uuid4()}"
    version = iter([b"one", b"two"])

    async def source() -> bytes:
        return next(version)

    assert await cache.fetch("test", key, 60, source, [gen]) == b"one"
    assert await cache.fetch("test", key, 60, source, [gen]) == b"one"
    await cache.invalidate(bump=[gen])
    assert await cache.fetch("test", key, 60, source, [gen]) == b"two"


async def test_a_value_true_until_an_instant_is_cached_no_longer(redis: Redis) -> None:
    cache, key = Cache(redis), f"test:{uuid.uuid4()}"
    version = iter([b"one", b"two", b"three", b"four"])

    async def until(seconds: float) -> Expiring | bytes:
        return Expiring.within(next(version), seconds)

    # True for 0.3 s: the key outlives neither that nor the cache's own TTL.
    assert await cache.fetch("test", key, 60, lambda: until(0.3)) == b"one"
    assert 0 < await redis.pttl(key) <= 300
    assert await cache.fetch("test", key, 60, lambda: until(0.3)) == b"one"
    await asyncio.sleep(0.35)
    # Already untrue when computed (a hold expired meanwhile): served, never cached.
    assert await cache.fetch("test", key, 60, lambda: until(-0.01)) == b"two"
    assert await redis.exists(key) == 0
    assert await cache.fetch("test", key, 60, lambda: until(3600)) == b"three"
    assert 59_000 < await redis.pttl(key) <= 60_000


async def test_without_redis_reads_go_to_the_source() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    cache = Cache(dead)

    async def source() -> bytes:
        return b"fresh"

    assert await cache.fetch("test", "k", 60, source, ["gen:x"]) == b"fresh"
    assert await cache.fetch("test", "k", 60, source) == b"fresh"
    await cache.invalidate(delete=["k"], bump=["gen:x"])  # logged, not raised
    await dead.aclose()


async def test_a_failing_source_is_not_cached(redis: Redis) -> None:
    cache, key = Cache(redis), f"test:{uuid.uuid4()}"

    async def broken() -> bytes:
        raise LookupError("no such thing")

    with pytest.raises(LookupError):
        await cache.fetch("test", key, 60, broken)
    assert await redis.get(key) is None


async def test_an_invalidation_lost_to_a_redis_outage_is_replayed_before_the_next_read(
    workdir: Path,
) -> None:
    """F8: a change made while Redis was away is visible once it is back, although
    Redis kept the entry cached before the outage (persistence on)."""
    server = RedisServer(workdir / "redis-cache-outage", free_port(), persistent=True)
    server.start()
    client = Redis.from_url(server.url(), socket_timeout=0.5, socket_connect_timeout=0.5)
    cache, key, gen = Cache(client), f"k-{uuid.uuid4().hex}", f"gen:{uuid.uuid4().hex}"
    value = b"fee 100"

    async def source() -> bytes:
        return value

    try:
        assert await cache.fetch("test", key, 3600, source, [gen]) == b"fee 100"
        server.stop()  # saves: the old entry survives the restart
        value = b"fee 877"  # the database changes while Redis is away...
        await cache.invalidate(delete=[key], bump=[gen])  # ...and the bump is lost
        assert await cache.fetch("test", key, 3600, source, [gen]) == b"fee 877"  # bypass
        server.start()
        assert await cache.fetch("test", key, 3600, source, [gen]) == b"fee 877"
        assert int(await client.get(gen) or 0) == 1  # the bump reached Redis after all
    finally:
        await client.aclose()
        server.stop()


async def test_invalidations_at_the_same_time_each_bump_their_key_once(redis: Redis) -> None:
    """Concurrent invalidations re-sent one shared pending set: a generation was bumped
    as many times as invalidations overlapped it, each bump a miss for its readers."""
    cache = Cache(redis)
    gens = [f"gen:{uuid.uuid4().hex}" for _ in range(32)]
    await asyncio.gather(*(cache.invalidate(bump=[gen]) for gen in gens))
    assert [int(await redis.get(gen) or 0) for gen in gens] == [1] * len(gens)
