"""Rate limiting on Redis (the `limits` library), with a per-process fallback.

When Redis cannot be reached the limits are still enforced, per process, from memory,
so an outage neither lets password guessing through nor turns requests into errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import Redis

from amrutam.infra.logs import get_logger
from amrutam.infra.metrics import REDIS_DEGRADED

log = get_logger(__name__)

# After a Redis failure, use the local limiter for this long before trying Redis again,
# so an outage costs one failed call per process per interval, not one per request.
_RETRY_REDIS_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    item: RateLimitItem

    @classmethod
    def parse(cls, name: str, spec: str) -> Policy:
        return cls(name, parse(spec))

    @property
    def window_s(self) -> int:
        return int(self.item.get_expiry())


@dataclass(frozen=True, slots=True)
class Decision:
    policy: Policy
    allowed: bool
    remaining: int
    reset_in: int

    @property
    def limit(self) -> int:
        return int(self.policy.item.amount)


class RateLimiter:
    def __init__(self, redis: Redis, redis_url: str) -> None:
        storage = RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            wrap_exceptions=True,
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        self._shared = FixedWindowRateLimiter(storage)
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._redis_down_until = 0.0

    def _pick(self) -> FixedWindowRateLimiter:
        return self._local if time.monotonic() < self._redis_down_until else self._shared

    def _mark_down(self, exc: Exception) -> None:
        if time.monotonic() >= self._redis_down_until:
            log.warning("ratelimit.redis_unavailable", error=str(exc))
        self._redis_down_until = time.monotonic() + _RETRY_REDIS_AFTER_S
        REDIS_DEGRADED.labels("ratelimit").inc()

    async def hit(self, policy: Policy, *ids: str) -> Decision:
        return await self._apply(policy, ids, consume=True)

    async def peek(self, policy: Policy, *ids: str) -> Decision:
        """The state of a limit without consuming from it."""
        return await self._apply(policy, ids, consume=False)

    async def clear(self, policy: Policy, *ids: str) -> None:
        for limiter in (self._local, self._shared):
            try:
                await limiter.clear(policy.item, policy.name, *ids)
            except StorageError as exc:
                self._mark_down(exc)

    async def _apply(self, policy: Policy, ids: tuple[str, ...], consume: bool) -> Decision:
        limiter = self._pick()
        try:
            return await self._ask(limiter, policy, ids, consume)
        except StorageError as exc:
            self._mark_down(exc)
            return await self._ask(self._local, policy, ids, consume)

    @staticmethod
    async def _ask(
        limiter: FixedWindowRateLimiter, policy: Policy, ids: tuple[str, ...], consume: bool
    ) -> Decision:
        # The fixed-window strategy's own storage calls, used directly: the counter that
        # the hit returns gives the remaining quota, so the headers cost one more call
        # (the expiry) instead of two.
        item, key = policy.item, policy.item.key_for(policy.name, *ids)
        if consume:
            count = await limiter.storage.incr(key, item.get_expiry())
        else:
            count = await limiter.storage.get(key)
        reset_at = await limiter.storage.get_expiry(key)
        # Redis reports whole seconds left (rounded down): add one so that a client
        # waiting Retry-After seconds never arrives before the window has reset.
        reset_in = max(1, round(reset_at - time.time()) + 1)
        allowed = count <= item.amount if consume else count < item.amount
        return Decision(policy, allowed, max(0, item.amount - count), reset_in)
