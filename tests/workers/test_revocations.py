"""The beat task that writes ended sessions' markers back into Redis, on the real worker."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import jwt
import redis
from celery import Celery

from amrutam.dev.servers import RedisServer
from tests.factories import make_patients, pg_dsn
from tests.workers.conftest import Worker, wait_for


async def test_ended_sessions_get_their_markers_back(
    worker: Worker, broker: Celery, worker_redis: RedisServer, database_url: str
) -> None:
    ended_now, ended_long_ago = [
        uuid.UUID(jwt.decode(h["Authorization"][7:], options={"verify_signature": False})["fam"])
        for h in await make_patients(database_url, 2)
    ]
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        end = "UPDATE auth_sessions SET revoked_at = now() - $2::interval WHERE id = $1"
        await conn.execute(end, ended_now, timedelta(seconds=10))
        await conn.execute(end, ended_long_ago, timedelta(hours=2))
    finally:
        await conn.close()

    store = redis.Redis.from_url(worker_redis.url())
    assert not store.exists(f"revoked:{ended_now}")  # as a restarted Redis would have it
    broker.send_task("workers.tasks.resend_revocations", queue="default")
    wait_for(lambda: store.exists(f"revoked:{ended_now}"))
    # Only as long as one of its access tokens can live (900 s, a margin, 10 s gone).
    assert 900 < store.ttl(f"revoked:{ended_now}") <= 960
    # One ended before the oldest live access token was issued needs no marker.
    assert not store.exists(f"revoked:{ended_long_ago}")
