"""Fixed-window rate limits in Redis, with a per-process fallback.

A hit is one round trip (a Lua script counts it, starts the window on its first hit and
reports the time left). A request's hit can also ride on the first Redis script the
request runs anyway (``carrying_the_pending_hit``): a cached read then costs one round
trip for the limit and the cache together, and is refused before anything is computed.
The same trip asks whether the caller's session has ended (``auth.sessions``), so that
check costs authenticated requests no round trip of its own.

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
# none), KEYS[2] the caller's session-ended marker ('' for none), ARGV[1] the window in
# seconds and ARGV[2] the limit. Over the limit the script stops there; otherwise it
# goes on with its own keys (KEYS[3]...) and arguments (ARGV[3]...) and returns
# {count, pttl, revoked, ...its own results}.
HIT_LUA = """
local count, pttl, revoked = -1, -1, 0
if KEYS[2] ~= '' then revoked = redis.call('EXISTS', KEYS[2]) end
if KEYS[1] ~= '' then
  count = redis.call('INCR', KEYS[1])
  if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
  pttl = redis.call('PTTL', KEYS[1])
  if count > tonumber(ARGV[2]) then return {count, pttl, revoked} end
end
"""
_OWN_RESULTS = 3  # where a script's own results start


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
    # The key whose existence says the caller's session has ended ('' for no session),
    # and what Redis said of it: None until it has (or when it could not).
    marker: str = ""
    revoked: bool | None = None
    decision: Decision | None = None
    carried: bool = False  # a script is taking it along (one at a time)

    def decide(self, decision: Decision, revoked: int | None = None) -> Decision:
        if revoked is not None and self.marker:
            self.revoked = bool(revoked)
        self.decision = decision
        if not decision.allowed:
            raise Busy("rate limit exceeded; slow down", retry_after=decision.reset_in)
        return decision


pending_hit: ContextVar[Hit | None] = ContextVar("pending_hit", default=None)


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._hit_script = redis.register_script(HIT_LUA + "return {count, pttl, revoked}")
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
        decision, _ = await self._send(policy, ids, "")
        return decision

    async def _send(
        self, policy: Policy, ids: tuple[str, ...], marker: str
    ) -> tuple[Decision, int | None]:
        if not self.redis_down:
            try:
                count, pttl, revoked = await self._hit_script(
                    keys=[policy.key(*ids), marker], args=[policy.window_s, policy.limit]
                )
                return Decision.of(policy, int(count), int(pttl) / 1000), int(revoked)
            except RedisError as exc:
                self.mark_down(exc)
        key = policy.item.key_for(policy.name, *ids)
        count = await self._local.storage.incr(key, policy.window_s)
        reset_at = await self._local.storage.get_expiry(key)
        return Decision.of(policy, count, reset_at - time.time()), None

    def defer(self, policy: Policy, *ids: str, marker: str = "") -> Hit:
        """This request's hit, left for its first Redis script to carry; ``marker`` is
        the key that says whether the caller's session has ended."""
        hit = Hit(self, policy, ids, marker)
        pending_hit.set(hit)
        return hit

    async def settle(self, hit: Hit) -> Decision:
        """Send a hit no script carried; Busy when it is over the limit."""
        if hit.decision is not None:
            return hit.decision
        return hit.decide(*await self._send(hit.policy, hit.ids, hit.marker))

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
        result = await script(keys=["", "", *keys], args=[0, 0, *args])
        return list(result[_OWN_RESULTS:])
    policy, hit.carried = hit.policy, True
    try:
        result = await script(
            keys=[policy.key(*hit.ids), hit.marker, *keys],
            args=[policy.window_s, policy.limit, *args],
        )
    except RedisError as exc:
        hit.carried = False
        hit.limiter.mark_down(exc)
        raise
    hit.decide(Decision.of(policy, int(result[0]), int(result[1]) / 1000), int(result[2]))
    return list(result[_OWN_RESULTS:])
