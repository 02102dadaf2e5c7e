"""Second-factor use cases: set up, confirm, disable, and the check of a code.

Every code anyone sends is counted by the code throttle before it is checked, and every
wrong one is audited (``auth.mfa_failed``), in a transaction of its own so that the
record survives the refusal.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import asyncpg

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, record
from amrutam.auth import mfa, sessions
from amrutam.auth.schemas import MfaSetup, RecoveryCodes
from amrutam.auth.throttle import Throttle
from amrutam.errors import AuthenticationFailed, Conflict, InvalidInput
from amrutam.infra.db import Database

Used = Literal["totp", "recovery_code"]
T = TypeVar("T")


async def use_code(
    conn: asyncpg.Connection, box: mfa.SecretBox, user_id: uuid.UUID, code: str
) -> Used | None:
    """Spend ``code`` (a TOTP code or an unused recovery code) of the user's enabled
    factor, inside the caller's transaction; None when it is wrong, used or replayed."""
    sealed = await conn.fetchval(
        "SELECT secret_sealed FROM mfa_factors WHERE user_id = $1 AND enabled_at IS NOT NULL",
        user_id,
    )
    if sealed is None:
        return None
    code = code.strip()
    if mfa.is_totp_code(code):
        step = mfa.matching_step(box.open(sealed), code)
        if step is None:
            return None
        # Only a step after the last one accepted: the same code sent twice, even at the
        # same moment, wins once (the row lock orders the two updates).
        taken = await conn.fetchval(
            "UPDATE mfa_factors SET last_step = $2 "
            "WHERE user_id = $1 AND (last_step IS NULL OR last_step < $2) RETURNING 1",
            user_id,
            step,
        )
        return "totp" if taken else None
    spent = await conn.fetchval(
        "UPDATE mfa_recovery_codes SET used_at = now() "
        "WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL RETURNING 1",
        user_id,
        mfa.recovery_code_hash(code),
    )
    return "recovery_code" if spent else None


async def is_enabled(conn: asyncpg.Connection, user_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT enabled_at IS NOT NULL FROM mfa_factors WHERE user_id = $1", user_id
        )
    )


class SecondFactors:
    def __init__(
        self,
        db: Database,
        box: mfa.SecretBox,
        throttle: Throttle | None,
        revocations: sessions.Revocations | None = None,
    ) -> None:
        self._db = db
        self._box = box
        self._throttle = throttle
        self._revocations = revocations

    async def setup(self, actor: Actor, email: str) -> MfaSetup:
        """A new secret, not in force until ``confirm`` (a second setup replaces it)."""
        user_id = _user(actor)
        secret = mfa.new_secret()
        async with self._db.connection() as conn, conn.transaction():
            replaced = await conn.fetchval(
                "INSERT INTO mfa_factors (user_id, secret_sealed) VALUES ($1, $2) "
                "ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, "
                "created_at = now(), last_step = NULL WHERE mfa_factors.enabled_at IS NULL "
                "RETURNING 1",
                user_id,
                self._box.seal(secret),
            )
            if replaced is None:
                raise Conflict("a second factor is already on; disable it first")
            await record(conn, actor, Action.AUTH_MFA_SETUP, "user", user_id)
        return MfaSetup(secret=secret, otpauth_uri=mfa.enrolment_uri(secret, email))

    async def confirm(
        self, actor: Actor, code: str, keep: uuid.UUID | None = None
    ) -> RecoveryCodes:
        """Turn the set-up factor on with a code from it; ten fresh recovery codes. Every
        session of the account but ``keep`` (the caller's) ends: one opened with a stolen
        password must not outlive its owner's enrolment (G7)."""
        user_id = _user(actor)
        ended: list[uuid.UUID] = []

        async def attempt(conn: asyncpg.Connection) -> RecoveryCodes | None:
            pending = await conn.fetchrow(
                "SELECT secret_sealed, enabled_at FROM mfa_factors WHERE user_id = $1 FOR UPDATE",
                user_id,
            )
            if pending is None or pending["enabled_at"] is not None:
                raise Conflict("no second factor is waiting to be confirmed; set one up first")
            step = mfa.matching_step(self._box.open(pending["secret_sealed"]), code.strip())
            if step is None:
                return None
            await conn.execute(
                "UPDATE mfa_factors SET enabled_at = now(), last_step = $2 WHERE user_id = $1",
                user_id,
                step,
            )
            codes = mfa.new_recovery_codes()
            await conn.execute("DELETE FROM mfa_recovery_codes WHERE user_id = $1", user_id)
            await conn.executemany(
                "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                [(user_id, mfa.recovery_code_hash(c)) for c in codes],
            )
            ended.extend(await sessions.end_others(conn, user_id, keep))
            detail = sessions.ended_detail(ended)
            await record(conn, actor, Action.AUTH_MFA_ENABLED, "user", user_id, detail)
            return RecoveryCodes(recovery_codes=codes)

        result = await self._checked(actor, "confirm", attempt)
        if self._revocations is not None:
            await self._revocations.mark_all(ended)
        return result

    async def disable(self, actor: Actor, code: str) -> None:
        """Turn the factor off, with a code from it (or a recovery code)."""
        user_id = _user(actor)

        async def attempt(conn: asyncpg.Connection) -> bool | None:
            if not await is_enabled(conn, user_id):
                raise Conflict("no second factor is on")
            used = await use_code(conn, self._box, user_id, code)
            if used is None:
                return None
            await conn.execute("DELETE FROM mfa_recovery_codes WHERE user_id = $1", user_id)
            await conn.execute("DELETE FROM mfa_factors WHERE user_id = $1", user_id)
            await record(conn, actor, Action.AUTH_MFA_DISABLED, "user", user_id, {"code": used})
            return True

        await self._checked(actor, "disable", attempt)

    async def _checked(
        self,
        actor: Actor,
        step: str,
        attempt: Callable[[asyncpg.Connection], Awaitable[T | None]],
    ) -> T:
        """Run ``attempt`` throttled; its None (a wrong code) is audited and refused (422)."""
        user_id = _user(actor)
        address = actor.ip or "unknown"
        if self._throttle is not None:
            await self._throttle.admit(str(user_id), address)
        async with self._db.connection() as conn:
            async with conn.transaction():
                result = await attempt(conn)
            if result is None:
                async with conn.transaction():
                    await record(
                        conn, actor, Action.AUTH_MFA_FAILED, "user", user_id, {"step": step}
                    )
                raise InvalidInput("the code is wrong, expired or already used")
        if self._throttle is not None:
            await self._throttle.succeeded(str(user_id), address)
        return result


def _user(actor: Actor) -> uuid.UUID:
    if actor.user_id is None:
        raise AuthenticationFailed("a valid bearer token is required")
    return actor.user_id
