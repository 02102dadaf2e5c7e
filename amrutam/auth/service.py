"""Account use cases: register, log in, rotate refresh tokens, log out.

Each takes the caller's session so that later writes (the audit row, the outbox
event) join the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from amrutam.audit.log import Actor, record_in
from amrutam.auth.models import RefreshToken, Role, User
from amrutam.auth.passwords import Passwords
from amrutam.auth.schemas import AuthResult, Credentials, Registration, UserOut
from amrutam.auth.tokens import AccessTokens, hash_refresh_token, new_refresh_token
from amrutam.errors import AuthenticationFailed, Conflict, NotFound
from amrutam.settings import Settings
from amrutam.timeutil import utcnow


class AuthService:
    def __init__(self, settings: Settings) -> None:
        self.passwords = Passwords(settings)
        self.access_tokens = AccessTokens(settings)
        self._refresh_ttl = timedelta(seconds=settings.refresh_token_ttl_s)

    async def register(self, session: AsyncSession, data: Registration, actor: Actor) -> AuthResult:
        user = await self.create_user(
            session,
            email=data.email,
            password=data.password,
            full_name=data.full_name,
            role=Role(data.role),
            phone=data.phone,
        )
        await record_in(session, _as(user, actor), "auth.register", "user", user.id)
        return await self._issue(session, user, uuid.uuid4())

    async def create_user(
        self,
        session: AsyncSession,
        *,
        email: str,
        password: str,
        full_name: str,
        role: Role,
        phone: str | None = None,
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

    async def login(
        self, session: AsyncSession, credentials: Credentials, actor: Actor
    ) -> AuthResult:
        user = await self._by_email(session, credentials.email)
        ok = await self.passwords.verify(user.password_hash if user else None, credentials.password)
        if not ok or user is None or not user.is_active:
            raise AuthenticationFailed("invalid email or password")
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.passwords.hash(credentials.password)
        await record_in(session, _as(user, actor), "auth.login", "user", user.id)
        return await self._issue(session, user, uuid.uuid4())

    async def login_failed(self, session: AsyncSession, email: str, actor: Actor) -> None:
        """Audit a failed login (its own transaction: the login itself rolled back)."""
        user = await self._by_email(session, email)
        await record_in(
            session,
            actor,
            "auth.login_failed",
            "user",
            user.id if user else None,
            {"known_account": user is not None},
        )

    async def refresh(self, session: AsyncSession, token: str, actor: Actor) -> AuthResult:
        row = (
            await session.exec(
                select(RefreshToken)
                .where(RefreshToken.token_hash == hash_refresh_token(token))
                .with_for_update()
            )
        ).first()
        if row is None:
            raise AuthenticationFailed("invalid refresh token")
        if row.used_at is not None or row.revoked_at is not None:
            # A used token presented again means it leaked: end the whole family.
            # The revocation must survive the error, so it commits here.
            await self.revoke_family(session, row.family_id)
            await record_in(
                session,
                actor,
                "auth.refresh_reuse",
                "user",
                row.user_id,
                {"family_id": str(row.family_id)},
            )
            await session.commit()
            raise AuthenticationFailed("refresh token reuse detected; please log in again")
        now = utcnow()
        if row.expires_at <= now:
            raise AuthenticationFailed("refresh token expired")
        user = await session.get(User, row.user_id)
        if user is None or not user.is_active:
            raise AuthenticationFailed("account disabled")
        row.used_at = now
        session.add(row)
        await record_in(session, _as(user, actor), "auth.refresh", "user", user.id)
        return await self._issue(session, user, row.family_id)

    async def logout(self, session: AsyncSession, actor: Actor, family_id: uuid.UUID) -> None:
        await self.revoke_family(session, family_id)
        await record_in(session, actor, "auth.logout", "user", actor.user_id)

    async def revoke_family(self, session: AsyncSession, family_id: uuid.UUID) -> None:
        await session.exec(
            sa.update(RefreshToken)  # type: ignore[call-overload]
            .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=utcnow())
        )

    async def get_user(self, session: AsyncSession, user_id: uuid.UUID) -> User:
        user = await session.get(User, user_id)
        if user is None or not user.is_active:
            raise NotFound("user not found")
        return user

    async def set_password(self, session: AsyncSession, user: User, password: str) -> None:
        user.password_hash = await self.passwords.hash(password)
        user.updated_at = utcnow()
        session.add(user)
        await session.exec(
            sa.update(RefreshToken)  # type: ignore[call-overload]
            .where(col(RefreshToken.user_id) == user.id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=utcnow())
        )

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

    async def purge_expired_tokens(self, session: AsyncSession, older_than: timedelta) -> int:
        result = await session.exec(
            sa.delete(RefreshToken).where(RefreshToken.expires_at < utcnow() - older_than)  # type: ignore[call-overload,arg-type]
        )
        return int(result.rowcount or 0)


def _as(user: User, actor: Actor) -> Actor:
    """The request's actor, now known to be this user."""
    return Actor(user.id, user.role, actor.request_id, actor.ip)
