"""Sessions: one per refresh-token family, and the end of their access tokens.

A session starts at login, is touched by every refresh and ends when its owner logs out
or revokes it, or when a used refresh token comes back. Ending a session must also end
the access tokens already handed out for it, at once, though they are verified without
the database. So each ended session leaves a marker in Redis (``revoked:<session id>``)
for as long as one of its access tokens can live, and every authenticated request asks
for it in the Redis script it runs anyway (the rate-limit hit). The database stays the
authority: when Redis cannot answer, the request asks it instead (never "allow"), and a
periodic task writes again every marker still needed, so a Redis that lost them (a
restart, a failover, an outage at the moment of logout) has them back within seconds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from amrutam.infra.logs import get_logger
from amrutam.infra.metrics import REDIS_DEGRADED

log = get_logger(__name__)

_MARKER = "revoked:"
USER_AGENT_MAX = 256


def marker_key(session_id: uuid.UUID | str) -> str:
    return f"{_MARKER}{session_id}"


@dataclass(frozen=True, slots=True)
class Client:
    """Where a session was opened from, as the request shows it."""

    ip: str | None = None
    user_agent: str | None = None


async def start(
    conn: asyncpg.Connection,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    expires_at: datetime,
    client: Client,
    *,
    second_factor: bool,
) -> None:
    await conn.execute(
        "INSERT INTO auth_sessions (id, user_id, expires_at, user_agent, ip, second_factor) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        session_id,
        user_id,
        expires_at,
        (client.user_agent or "")[:USER_AGENT_MAX] or None,
        client.ip,
        second_factor,
    )


async def touch(
    conn: asyncpg.Connection, session_id: uuid.UUID, expires_at: datetime, ip: str | None
) -> None:
    """A refresh: the session was used now, from ``ip``, and lives on with the new token."""
    await conn.execute(
        "UPDATE auth_sessions SET last_used_at = now(), expires_at = $2, "
        "ip = coalesce($3, ip) WHERE id = $1",
        session_id,
        expires_at,
        ip,
    )


async def open_for(conn: asyncpg.Connection, user_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, created_at, last_used_at, user_agent, ip FROM auth_sessions "
        "WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() "
        "ORDER BY last_used_at DESC",
        user_id,
    )
    return rows


async def end(
    conn: asyncpg.Connection, session_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> bool:
    """Revoke a session and its refresh tokens; False if there was no open one (of
    ``user_id``, when given)."""
    ended = await conn.fetchval(
        "UPDATE auth_sessions SET revoked_at = now() "
        "WHERE id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR user_id = $2) "
        "RETURNING id",
        session_id,
        user_id,
    )
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        session_id,
    )
    return ended is not None


async def end_others(
    conn: asyncpg.Connection, user_id: uuid.UUID, keep: uuid.UUID | None
) -> list[uuid.UUID]:
    """Revoke every open session of the user but ``keep`` (the caller's), with their
    refresh tokens: after the account's credentials change, a session opened with the
    old ones must not live on (G7). The ended sessions' ids, for their markers."""
    ended = [
        row["id"]
        for row in await conn.fetch(
            "UPDATE auth_sessions SET revoked_at = now() WHERE user_id = $1 "
            "AND revoked_at IS NULL AND id IS DISTINCT FROM $2 RETURNING id",
            user_id,
            keep,
        )
    ]
    if ended:
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() "
            "WHERE family_id = ANY($1::uuid[]) AND revoked_at IS NULL",
            ended,
        )
    return ended


def ended_detail(ended: list[uuid.UUID]) -> dict[str, list[str]] | None:
    """What an audit row of a credentials change says about the sessions it ended."""
    return {"sessions_ended": [str(i) for i in ended]} if ended else None


async def is_open(conn: asyncpg.Connection, session_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT revoked_at IS NULL FROM auth_sessions WHERE id = $1", session_id
        )
    )


class Revocations:
    """The Redis markers of ended sessions (see the module's docstring)."""

    def __init__(self, redis: Redis, access_token_ttl_s: int) -> None:
        self._redis = redis
        # A marker outlives every access token issued before its session ended.
        self._ttl_s = access_token_ttl_s + 60

    async def mark(self, session_id: uuid.UUID) -> None:
        """Best effort: the periodic ``resend`` covers a Redis that is away now."""
        try:
            await self._redis.set(marker_key(session_id), 1, ex=self._ttl_s)
        except RedisError as exc:
            REDIS_DEGRADED.labels("revocations").inc()
            log.warning(
                "sessions.revocation_not_marked", session_id=str(session_id), error=str(exc)
            )

    async def mark_all(self, session_ids: list[uuid.UUID]) -> None:
        for session_id in session_ids:
            await self.mark(session_id)

    async def resend(self, conn: asyncpg.Connection) -> int:
        """Mark again every session ended recently enough for its tokens to live."""
        ended = await conn.fetch(
            "SELECT id, $1::int - extract(epoch FROM now() - revoked_at) AS left_s "
            "FROM auth_sessions WHERE revoked_at > now() - $1::int * interval '1 second'",
            self._ttl_s,
        )
        if not ended:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for row in ended:
                pipe.set(marker_key(row["id"]), 1, ex=max(1, int(row["left_s"])))
            await pipe.execute()
        return len(ended)
