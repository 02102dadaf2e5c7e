"""A password change: the current password, a new one as strong as registration asks,
and every other session of the account ended (G7: a session opened with the old
password must not outlive the change). The caller's own session stays."""

from __future__ import annotations

import uuid

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, record
from amrutam.auth import sessions
from amrutam.auth.passwords import Passwords
from amrutam.auth.schemas import TOO_GUESSABLE, PasswordChange, guessable
from amrutam.auth.throttle import Throttle
from amrutam.errors import AuthenticationFailed, FieldError, InvalidInput
from amrutam.infra.db import Database


class PasswordChanges:
    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        throttle: Throttle | None,
        revocations: sessions.Revocations | None,
    ) -> None:
        self._db = db
        self._passwords = passwords
        self._throttle = throttle
        self._revocations = revocations

    async def change(self, actor: Actor, keep: uuid.UUID | None, change: PasswordChange) -> None:
        if actor.user_id is None:
            raise AuthenticationFailed("a valid bearer token is required")
        async with self._db.connection() as conn:
            user = await conn.fetchrow(
                "SELECT email, full_name, password_hash FROM users WHERE id = $1 AND is_active",
                actor.user_id,
            )
        if user is None:
            raise AuthenticationFailed("a valid bearer token is required")
        # Trying current passwords through a stolen access token is guessing a password:
        # the login throttle counts it.
        if self._throttle is not None:
            await self._throttle.admit(user["email"], actor.ip or "unknown")
        if not await self._passwords.verify(user["password_hash"], change.current_password):
            async with self._db.connection() as conn, conn.transaction():
                step = {"step": "password_change"}
                await record(conn, actor, Action.AUTH_LOGIN_FAILED, "user", actor.user_id, step)
            raise InvalidInput(
                "the current password is wrong",
                [FieldError("current_password", "does not match the account's password")],
            )
        if guessable(change.new_password, user["email"], user["full_name"]):
            raise InvalidInput(TOO_GUESSABLE, [FieldError("new_password", TOO_GUESSABLE)])
        new_hash = await self._passwords.hash(change.new_password)
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
                actor.user_id,
                new_hash,
            )
            ended = await sessions.end_others(conn, actor.user_id, keep)
            detail = sessions.ended_detail(ended)
            await record(conn, actor, Action.AUTH_PASSWORD_CHANGED, "user", actor.user_id, detail)
        if self._revocations is not None:
            await self._revocations.mark_all(ended)
