"""Account use cases: register, log in, rotate refresh tokens, log out.

Like every service of the core, each use case opens and commits its own transaction,
with its audit row inside it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, record_in
from amrutam.auth.models import RefreshToken, Role, User
from amrutam.auth.passwords import Passwords
from amrutam.auth.schemas import AuthResult, Credentials, Registration, UserOut
from amrutam.auth.throttle import LoginThrottle, Note, ignore
from amrutam.auth.tokens import AccessTokens, hash_refresh_token, new_refresh_token
from amrutam.errors import AuthenticationFailed, Conflict, NotFound
from amrutam.infra.db import Database
from amrutam.settings import Settings
from amrutam.timeutil import utcnow


class Accounts:
    def __init__(
        self, db: Database, settings: Settings, throttle: LoginThrottle | None = None
    ) -> None:
        self._db = db
        self._throttle = throttle
        self.passwords = Passwords(settings)
        self.access_tokens = AccessTokens(settings)
        self._refresh_ttl = timedelta(seconds=settings.refresh_token_ttl_s)

    async def register(self, actor: Actor, data: Registration) -> AuthResult:
        async with self._db.transaction() as session:
            user = await self._create(
                session,
                email=data.email,
                password=data.password,
                full_name=data.full_name,
                role=Role(data.role),
                phone=data.phone,
            )
            await record_in(session, _as(user, actor), Action.AUTH_REGISTER, "user", user.id)
            return await self._issue(session, user, uuid.uuid4())

    async def create_user(
        self, *, email: str, password: str, full_name: str, role: Role, phone: str | None = None
    ) -> User:
        """An account made by an operator (admins, demo data): no tokens, no login."""
        async with self._db.transaction() as session:
            return await self._create(
                session, email=email, password=password, full_name=full_name, role=role, phone=phone
            )

    async def login(
        self, actor: Actor, credentials: Credentials, *, note: Note = ignore
    ) -> AuthResult:
        """Tokens for the right password; every attempt is throttled, every failure audited."""
        address = actor.ip or "unknown"
        if self._throttle is not None:
            await self._throttle.admit(credentials.email, address, note)
        try:
            async with self._db.transaction() as session:
                result = await self._login(session, actor, credentials)
        except AuthenticationFailed:
            async with self._db.transaction() as session:  # the login itself rolled back
                user = await self._by_email(session, credentials.email)
                await record_in(
                    session,
                    actor,
                    Action.AUTH_LOGIN_FAILED,
                    "user",
                    user.id if user else None,
                    {"known_account": user is not None},
                )
            raise
        if self._throttle is not None:
            await self._throttle.succeeded(credentials.email, address)
        return result

    async def refresh(self, actor: Actor, token: str) -> AuthResult:
        async with self._db.transaction() as session:
            row = (
                await session.exec(
                    select(RefreshToken)
                    .where(RefreshToken.token_hash == hash_refresh_token(token))
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise AuthenticationFailed("invalid refresh token")
            reused = row.used_at is not None or row.revoked_at is not None
            if not reused:
                return await self._rotate(session, actor, row)
        # A used token presented again means it leaked: end the whole family, in a
        # transaction of its own so that the revocation survives the error.
        async with self._db.transaction() as session:
            await _revoke_family(session, row.family_id)
            await record_in(
                session,
                actor,
                Action.AUTH_REFRESH_REUSE,
                "user",
                row.user_id,
                {"family_id": str(row.family_id)},
            )
        raise AuthenticationFailed("refresh token reuse detected; please log in again")

    async def logout(self, actor: Actor, *, family_id: uuid.UUID) -> None:
        async with self._db.transaction() as session:
            await _revoke_family(session, family_id)
            await record_in(session, actor, Action.AUTH_LOGOUT, "user", actor.user_id)

    async def user(self, user_id: uuid.UUID) -> UserOut:
        # A plain query: every client asks "who am I", and the ORM costs most of it.
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                "SELECT id, email, full_name, role, phone, is_active, created_at FROM users "
                "WHERE id = $1 AND is_active",
                user_id,
            )
        if row is None:
            raise NotFound("user not found")
        return UserOut.model_validate(dict(row))

    async def _create(
        self,
        session: AsyncSession,
        *,
        email: str,
        password: str,
        full_name: str,
        role: Role,
        phone: str | None,
    ) -> User:
        user = User(
            email=email.lower(),
            password_hash=await self.passwords.hash(password),
            full_name=full_name,
            role=role.value,
            phone=phone,
        )
        session.add(user)
        try:
            async with session.begin_nested():
                await session.flush()
        except IntegrityError as exc:
            raise Conflict("an account with this email already exists") from exc
        return user

    async def _login(
        self, session: AsyncSession, actor: Actor, credentials: Credentials
    ) -> AuthResult:
        user = await self._by_email(session, credentials.email)
        ok = await self.passwords.verify(user.password_hash if user else None, credentials.password)
        if not ok or user is None or not user.is_active:
            raise AuthenticationFailed("invalid email or password")
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.passwords.hash(credentials.password)
        await record_in(session, _as(user, actor), Action.AUTH_LOGIN, "user", user.id)
        return await self._issue(session, user, uuid.uuid4())

    async def _rotate(self, session: AsyncSession, actor: Actor, row: RefreshToken) -> AuthResult:
        now = utcnow()
        if row.expires_at <= now:
            raise AuthenticationFailed("refresh token expired")
        user = await session.get(User, row.user_id)
        if user is None or not user.is_active:
            raise AuthenticationFailed("account disabled")
        row.used_at = now
        session.add(row)
        await record_in(session, _as(user, actor), Action.AUTH_REFRESH, "user", user.id)
        return await self._issue(session, user, row.family_id)

    async def _by_email(self, session: AsyncSession, email: str) -> User | None:
        return (
            await session.exec(select(User).where(sa.func.lower(User.email) == email.lower()))
        ).first()

    async def _issue(self, session: AsyncSession, user: User, family_id: uuid.UUID) -> AuthResult:
        refresh = new_refresh_token()
        session.add(
            RefreshToken(
                user_id=user.id,
                family_id=family_id,
                token_hash=hash_refresh_token(refresh),
                expires_at=utcnow() + self._refresh_ttl,
            )
        )
        await session.flush()
        return AuthResult(
            user=UserOut.model_validate(user, from_attributes=True),
            access_token=self.access_tokens.issue(user.id, user.role, family_id),
            refresh_token=refresh,
            expires_in=self.access_tokens.ttl,
        )


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.exec(
        sa.update(RefreshToken)  # type: ignore[call-overload]
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


async def purge_expired_tokens(conn: asyncpg.Connection, *, older_than: timedelta) -> int:
    """Delete refresh tokens that expired more than ``older_than`` ago (a daily task)."""
    result = await conn.execute(
        "DELETE FROM refresh_tokens WHERE expires_at < $1", utcnow() - older_than
    )
    return int(result.split()[-1])


def _as(user: User, actor: Actor) -> Actor:
    """The request's actor, now known to be this user."""
    return Actor(user.id, user.role, actor.request_id, actor.ip, actor.client_request_id)
