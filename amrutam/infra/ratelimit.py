"""Fixed-window rate limits in Redis, with a per-process fallback.

A hit is one round trip (a Lua script counts it, starts the window on its first hit and
reports the time left). A request's hit can also ride on the first Redis script the
request runs anyway (``carrying_the_pending_hit``): a cached read then costs one round
trip for the limit and the cache together, and is refused before anything is computed.

When Redis cannot be reached the limits are still enforced, per process, from memory
(the ``limits`` library), so an outage neither lets password guessing through nor turns
requests into errors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from amrutam.errors import Busy
from amrutam.infra.logs import get_logger
from amrutam.infra.metrics import REDIS_DEGRADED

log = get_logger(__name__)

# After a Redis failure, use the local limiter for this long before trying Redis again,
# so an outage costs one failed call per process per interval, not one per request.
_RETRY_REDIS_AFTER_S = 1.0
_KEY_PREFIX = "LIMITS"

# The first lines of every script that can carry a hit: KEYS[1] is the counter ('' for
# none), ARGV[1] the window in seconds and ARGV[2] the limit. Over the limit the script
# stops there; otherwise it goes on with its own keys (KEYS[2]...) and arguments
# (ARGV[3]...) and returns {count, pttl, ...its own results}.
HIT_LUA = """
local count, pttl = -1, -1
if KEYS[1] ~= '' then
  count = redis.call('INCR', KEYS[1])
  if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
  pttl = redis.call('PTTL', KEYS[1])
  if count > tonumber(ARGV[2]) then return {count, pttl} end
end
"""


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

    @property
    def limit(self) -> int:
        return int(self.item.amount)

    def key(self, *ids: str) -> str:
        return f"{_KEY_PREFIX}:{self.item.key_for(self.name, *ids)}"


@dataclass(frozen=True, slots=True)
class Decision:
    policy: Policy
    allowed: bool
    remaining: int
    reset_in: int

    @property
    def limit(self) -> int:
        return self.policy.limit

    @classmethod
    def of(cls, policy: Policy, count: int, seconds_left: float) -> Decision:
        # Round the time left up: a client waiting Retry-After seconds never arrives
        # before the window has reset.
        reset_in = max(1, math.ceil(seconds_left)) if seconds_left > 0 else policy.window_s
        return cls(policy, count <= policy.limit, max(0, policy.limit - count), reset_in)


@dataclass(slots=True)
class Hit:
    """A request's count against a limit, not sent yet: the request's first Redis script
    carries it, or ``RateLimiter.settle`` sends it alone."""

    limiter: RateLimiter
    policy: Policy
    ids: tuple[str, ...]
    decision: Decision | None = None
    carried: bool = False  # a script is taking it along (one at a time)

    def decide(self, decision: Decision) -> Decision:
        self.decision = decision
        if not decision.allowed:
            raise Busy("rate limit exceeded; slow down", retry_after=decision.reset_in)
        return decision


pending_hit: ContextVar[Hit | None] = ContextVar("pending_hit", default=None)


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._hit_script = redis.register_script(HIT_LUA + "return {count, pttl}")
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._redis_down_until = 0.0

    @property
    def redis_down(self) -> bool:
        return time.monotonic() < self._redis_down_until

    def mark_down(self, exc: Exception) -> None:
        if not self.redis_down:
            log.warning("ratelimit.redis_unavailable", error=str(exc))
        self._redis_down_until = time.monotonic() + _RETRY_REDIS_AFTER_S
        REDIS_DEGRADED.labels("ratelimit").inc()

    async def hit(self, policy: Policy, *ids: str) -> Decision:
        """Count one request against ``policy`` and say whether it is allowed."""
        if not self.redis_down:
            try:
                count, pttl = await self._hit_script(
                    keys=[policy.key(*ids)], args=[policy.window_s, policy.limit]
                )
                return Decision.of(policy, int(count), int(pttl) / 1000)
            except RedisError as exc:
                self.mark_down(exc)
        key = policy.item.key_for(policy.name, *ids)
        count = await self._local.storage.incr(key, policy.window_s)
        reset_at = await self._local.storage.get_expiry(key)
        return Decision.of(policy, count, reset_at - time.time())

    def defer(self, policy: Policy, *ids: str) -> Hit:
        """This request's hit, left for its first Redis script to carry."""
        hit = Hit(self, policy, ids)
        pending_hit.set(hit)
        return hit

    async def settle(self, hit: Hit) -> Decision:
        """Send a hit no script carried; Busy when it is over the limit."""
        if hit.decision is not None:
            return hit.decision
        return hit.decide(await self.hit(hit.policy, *hit.ids))

    async def clear(self, policy: Policy, *ids: str) -> None:
        await self._local.clear(policy.item, policy.name, *ids)
        try:
            await self._redis.delete(policy.key(*ids))
        except RedisError as exc:
            self.mark_down(exc)


async def carrying_the_pending_hit(
    script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | bytes]
) -> list[Any]:
    """Run ``script`` (which starts with ``HIT_LUA``) with the request's pending hit, if
    any, and return the script's own results. Busy when the hit is over its limit; on a
    Redis error the hit is left for ``settle`` (which then decides it locally)."""
    hit = pending_hit.get()
    if hit is None or hit.carried or hit.decision is not None or hit.limiter.redis_down:
        result = await script(keys=["", *keys], args=[0, 0, *args])
        return list(result[2:])
    policy, hit.carried = hit.policy, True
    try:
        result = await script(
            keys=[policy.key(*hit.ids), *keys], args=[policy.window_s, policy.limit, *args]
        )
    except RedisError as exc:
        hit.carried = False
        hit.limiter.mark_down(exc)
        raise
    hit.decide(Decision.of(policy, int(result[0]), int(result[1]) / 1000))
    return list(result[2:])
