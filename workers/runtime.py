"""One event loop, one small asyncpg pool and one Redis client per worker process, made
on first use.

Tasks are synchronous functions; each runs its coroutine on this loop, so connections
are reused across tasks instead of opened per task (and never shared across a fork).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from redis.asyncio import Redis

from amrutam.infra.db import libpq_dsn
from amrutam.infra.redis_client import create_redis
from amrutam.settings import get_settings

T = TypeVar("T")
_state: dict[str, object] = {}


async def _make_pool() -> asyncpg.Pool:
    # Created inside the loop that will use it: a pool binds to the running loop.
    return await asyncpg.create_pool(
        libpq_dsn(get_settings().database_url),
        min_size=0,
        max_size=4,
        server_settings={"application_name": "amrutam-worker"},
    )


def run(job: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    if _state.get("pid") != os.getpid():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        pool = loop.run_until_complete(_make_pool())
        _state.update(pid=os.getpid(), loop=loop, pool=pool, redis=create_redis(get_settings()))
    current = _state["loop"]
    assert isinstance(current, asyncio.AbstractEventLoop)
    return current.run_until_complete(job(_state["pool"]))  # type: ignore[arg-type]


def redis() -> Redis:
    """This process's Redis client, for the coroutines ``run`` runs."""
    client = _state.get("redis")
    assert isinstance(client, Redis), "only inside a job given to run()"
    return client
