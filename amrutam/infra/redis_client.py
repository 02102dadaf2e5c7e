"""The shared asyncio Redis client, with short timeouts so an outage fails fast."""

from __future__ import annotations

from redis.asyncio import Redis

from amrutam.settings import Settings


def create_redis(settings: Settings) -> Redis:
    client: Redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        max_connections=64,
        decode_responses=False,
    )
    return client
