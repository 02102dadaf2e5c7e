"""Read-through cache in Redis with explicit invalidation and stampede protection.

Keys may carry generation counters: bumping a counter makes every key built on it
unreachable at once, which is how "a change is visible immediately" is done for
search results without finding and deleting each cached page. Reading the counters
and the value is one round trip (a Lua script), which also carries the request's
rate-limit hit (``ratelimit.carrying_the_pending_hit``). On a miss one caller per key
recomputes (a short Redis lock, plus single flight inside the process); the others
wait briefly for its result. When Redis is down every read goes to the source.

A value that stops being true at a known instant rather than on an event (a slot
listing, once its first slot starts or a hold on a hidden slot expires) is computed as
``Expiring``: its key lives no longer than that, whatever the cache's TTL.

An invalidation that cannot reach Redis is not dropped: the process keeps it and
replays it before its next cache read or write, and until the replay succeeds its reads
bypass the cache, so an entry cached before the outage is never served after a change
this process made during it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from amrutam.infra.logs import get_logger
from amrutam.infra.metrics import CACHE_REQUESTS, REDIS_DEGRADED
from amrutam.infra.ratelimit import HIT_LUA, carrying_the_pending_hit

log = get_logger(__name__)

_GENERATIONAL_GET = (
    HIT_LUA
    + """
local parts = {ARGV[3]}
for i = 3, #KEYS do parts[#parts + 1] = redis.call('GET', KEYS[i]) or '0' end
local full = table.concat(parts, ':')
return {count, pttl, revoked, full, redis.call('GET', full)}
"""
)
# KEYS: the first ARGV[1] are deleted, the rest are generation counters to bump.
_INVALIDATE = """
local deletes = tonumber(ARGV[1])
for i = 1, deletes do redis.call('DEL', KEYS[i]) end
for i = deletes + 1, #KEYS do redis.call('INCR', KEYS[i]) end
return 0
"""
# Store a recomputed value (KEYS[1]) and release its recompute lock (KEYS[2]) if ours.
_STORE = """
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 0
"""
_RECOMPUTE_LOCK_MS = 5000
_WAIT_FOR_OTHER_S = 1.0
_POLL_S = 0.01


@dataclass(frozen=True, slots=True)
class Expiring:
    """A computed value that is true only until ``deadline`` (``time.monotonic()``)."""

    value: bytes
    deadline: float

    @classmethod
    def within(cls, value: bytes, seconds: float | None) -> Expiring | bytes:
        """``value``, true for ``seconds`` from now (None: until the next change)."""
        return value if seconds is None else cls(value, time.monotonic() + seconds)


Compute = Callable[[], Awaitable[bytes | Expiring]]


class Cache:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._generational_get = redis.register_script(_GENERATIONAL_GET)
        self._store = redis.register_script(_STORE)
        self._invalidate = redis.register_script(_INVALIDATE)
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._unsent_deletes: set[str] = set()
        self._unsent_bumps: set[str] = set()

    async def fetch(
        self,
        name: str,
        key: str,
        ttl_s: int,
        compute: Compute,
        generations: Sequence[str] = (),
    ) -> bytes:
        if not await self._replay_unsent():
            CACHE_REQUESTS.labels(name, "bypass").inc()
            return _value(await compute())
        try:
            found = await carrying_the_pending_hit(self._generational_get, generations, [key])
        except RedisError as exc:
            self._degraded(exc)
            return _value(await compute())
        full_key, value = found[0].decode(), found[1] if len(found) > 1 else None
        if value is not None:
            CACHE_REQUESTS.labels(name, "hit").inc()
            return bytes(value)
        CACHE_REQUESTS.labels(name, "miss").inc()
        return await self._single_flight(full_key, ttl_s, compute)

    async def _single_flight(self, key: str, ttl_s: int, compute: Compute) -> bytes:
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await self._fill(key, ttl_s, compute)
            future.set_result(value)
            return value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    async def _fill(self, key: str, ttl_s: int, compute: Compute) -> bytes:
        lock_key, token = f"lock:cache:{key}", secrets.token_hex(8)
        try:
            owner = bool(await self._redis.set(lock_key, token, nx=True, px=_RECOMPUTE_LOCK_MS))
            if not owner:
                waited = 0.0
                while waited < _WAIT_FOR_OTHER_S:
                    await asyncio.sleep(_POLL_S)
                    waited += _POLL_S
                    value = await self._redis.get(key)
                    if value is not None:
                        return bytes(value)
        except RedisError as exc:
            self._degraded(exc)
            return _value(await compute())
        computed = await compute()
        value, ttl_ms = _value(computed), ttl_s * 1000
        if isinstance(computed, Expiring):  # rounded down: the key never outlives it
            ttl_ms = min(ttl_ms, int((computed.deadline - time.monotonic()) * 1000))
        try:
            await self._store(keys=[key, lock_key], args=[value, ttl_ms, token if owner else ""])
        except RedisError as exc:
            self._degraded(exc)
        return value

    async def invalidate(self, delete: Sequence[str] = (), bump: Sequence[str] = ()) -> None:
        """Delete keys and bump generation counters; a failure is kept for a replay
        (see the module docstring), logged, never raised."""
        await self._send(set(delete), set(bump))

    async def _replay_unsent(self) -> bool:
        """Send the invalidations not yet sent; True when none is left."""
        return await self._send(set(), set())

    async def _send(self, deletes: set[str], bumps: set[str]) -> bool:
        """Send these invalidations and any an earlier failure left unsent, each once.

        The unsent ones are taken out before the call, so that invalidations running at
        the same time never send them again (each extra bump was a miss for every reader
        of its key: 8.6 bumps per booking at 32 connections); a failure puts them back."""
        deletes |= self._unsent_deletes
        bumps |= self._unsent_bumps
        self._unsent_deletes, self._unsent_bumps = set(), set()
        if not deletes and not bumps:
            return True
        ordered = sorted(deletes)
        try:
            await self._invalidate(keys=[*ordered, *sorted(bumps)], args=[len(ordered)])
        except RedisError as exc:
            self._degraded(exc)
            self._unsent_deletes |= deletes
            self._unsent_bumps |= bumps
            return False
        return True

    @staticmethod
    def _degraded(exc: Exception) -> None:
        REDIS_DEGRADED.labels("cache").inc()
        log.warning("cache.redis_unavailable", error=str(exc))


def _value(computed: bytes | Expiring) -> bytes:
    return computed.value if isinstance(computed, Expiring) else computed
