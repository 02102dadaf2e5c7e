"""What every API process shares about a second-factor challenge: whether it is spent.

A challenge (the password step's token) is good for one session: its first success
spends it, and so does its ``ATTEMPTS``-th wrong code (G4: the same challenge with a
second code gave a second session). The row is taken under a lock inside the
verification's transaction, so two codes sent at once for one challenge cannot both win.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

# Wrong codes one challenge may take; the account's code throttle counts across them.
ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Challenge:
    jti: str
    user_id: uuid.UUID
    expires_at: datetime


async def take(conn: asyncpg.Connection, challenge: Challenge) -> bool:
    """Lock the challenge's row for this transaction; False when it is already spent."""
    await conn.execute(
        "INSERT INTO mfa_challenges (jti, user_id, expires_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (jti) DO NOTHING",
        challenge.jti,
        challenge.user_id,
        challenge.expires_at,
    )
    open_: bool = await conn.fetchval(
        "SELECT spent_at IS NULL FROM mfa_challenges WHERE jti = $1 FOR UPDATE", challenge.jti
    )
    return open_


async def spend(conn: asyncpg.Connection, jti: str) -> None:
    """A success: the challenge is done. Rows of expired challenges go with it."""
    await conn.execute("UPDATE mfa_challenges SET spent_at = now() WHERE jti = $1", jti)
    await conn.execute("DELETE FROM mfa_challenges WHERE expires_at < now()")


async def failed(conn: asyncpg.Connection, jti: str) -> None:
    """A wrong code: one attempt fewer; the last one spends the challenge."""
    await conn.execute(
        "UPDATE mfa_challenges SET failures = failures + 1, "
        "spent_at = CASE WHEN failures + 1 >= $2 THEN now() END "
        "WHERE jti = $1 AND spent_at IS NULL",
        jti,
        ATTEMPTS,
    )
