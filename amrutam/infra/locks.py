"""Per-slot Redis locks: shed contention before it reaches the database.

``SET NX PX`` with a random token and a compare-and-delete release (redis-py's
``Lock``). The lock is an optimisation, never the guarantee: when Redis is down the
booking goes on and the database constraints decide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError

from amrutam.errors import Busy
from amrutam.infra.logs import get_logger
from amrutam.infra.metrics import LOCK_EVENTS, REDIS_DEGRADED

log = get_logger(__name__)


@asynccontextmanager
async def slot_lock(redis: Redis, slot_id: str, ttl_ms: int) -> AsyncIterator[None]:
    lock = redis.lock(f"lock:slot:{slot_id}", timeout=ttl_ms / 1000, blocking=False)
    held = False
    try:
        held = await lock.acquire(blocking=False)
    except RedisError as exc:
        REDIS_DEGRADED.labels("slot_lock").inc()
        LOCK_EVENTS.labels("redis_down").inc()
        log.warning("slot_lock.redis_unavailable", slot_id=slot_id, error=str(exc))
    else:
        if not held:
            LOCK_EVENTS.labels("contended").inc()
            raise Busy("this slot is being booked by someone else; retry shortly", retry_after=1)
        LOCK_EVENTS.labels("acquired").inc()
    try:
        yield
    finally:
        if held:
            try:
                await lock.release()
            except LockError:
                # It expired while we worked; the database constraints still held.
                LOCK_EVENTS.labels("expired").inc()
                log.warning("slot_lock.expired_before_release", slot_id=slot_id)
            except RedisError as exc:
                REDIS_DEGRADED.labels("slot_lock").inc()
                log.warning("slot_lock.release_failed", slot_id=slot_id, error=str(exc))
