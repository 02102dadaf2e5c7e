"""Account use cases: register, log in (with a second factor when the account has one),
rotate refresh tokens, list and end sessions, log out.

Like every service of the core, each use case opens and commits its own transaction,
with its audit row inside it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from amrutam.audit.actions import Action
from amrutam.audit.log import Actor, driver_connection, record, record_in
from amrutam.auth import challenges, factors, mfa, sessions
from amrutam.auth.models import RefreshToken, Role, User
from amrutam.auth.password_change import PasswordChanges
from amrutam.auth.passwords import Passwords
from amrutam.auth.schemas import (
    AuthResult,
    Credentials,
    LoginChallenge,
    Registration,
    SessionOut,
    UserOut,
)
from amrutam.auth.sessions import Client, Revocations
from amrutam.auth.throttle import Note, Throttle, ignore
from amrutam.auth.tokens import AccessTokens, hash_refresh_token, new_refresh_token
from amrutam.errors import AuthenticationFailed, Conflict, NotFound
from amrutam.infra.db import Database
from amrutam.settings import Settings
from amrutam.timeutil import utcnow

# The roles that must enrol a second factor when the settings require it.
MFA_ROLES = frozenset({Role.doctor.value, Role.admin.value})


class Accounts:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        throttle: Throttle | None = None,
        *,
        code_throttle: Throttle | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        self._db = db
        self._throttle = throttle
        self._code_throttle = code_throttle
        self._revocations = revocations
        self.passwords = Passwords(settings)
        self.access_tokens = AccessTokens(settings)
        self.box = mfa.SecretBox(settings.mfa_encryption_key.get_secret_value().encode())
        self.factors = factors.SecondFactors(db, self.box, code_throttle, revocations)
        self.password_changes = PasswordChanges(db, self.passwords, throttle, revocations)
        self._mfa_required = settings.mfa_required
        self._refresh_ttl = timedelta(seconds=settings.refresh_token_ttl_s)

    async def register(
        self, actor: Actor, data: Registration, user_agent: str | None = None
    ) -> AuthResult:
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
            return await self._issue(session, user, new_session=Client(actor.ip, user_agent))

    async def create_user(
        self, *, email: str, password: str, full_name: str, role: Role, phone: str | None = None
    ) -> User:
        """An account made by an operator (admins, demo data): no tokens, no login."""
        async with self._db.transaction() as session:
            return await self._create(
                session, email=email, password=password, full_name=full_name, role=role, phone=phone
            )

    async def login(
        self,
        actor: Actor,
        credentials: Credentials,
        user_agent: str | None = None,
        *,
        note: Note = ignore,
    ) -> AuthResult | LoginChallenge:
        """Tokens for the right password, or a challenge for the second factor when the
        account has one; every attempt is throttled, every failure audited."""
        address = actor.ip or "unknown"
        if self._throttle is not None:
            await self._throttle.admit(credentials.email, address, note)
        try:
            async with self._db.transaction() as session:
                result = await self._login(session, actor, credentials, user_agent)
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

    async def verify_mfa(
        self, actor: Actor, challenge: str, code: str, user_agent: str | None = None
    ) -> AuthResult:
        """The second step of a login: tokens for a right code (each TOTP step and each
        recovery code works once)."""
        step = self.access_tokens.challenged(challenge)
        user_id = step.user_id
        address = actor.ip or "unknown"
        if self._code_throttle is not None:
            await self._code_throttle.admit(str(user_id), address)
        async with self._db.transaction() as session:
            conn = await driver_connection(session)
            if not await challenges.take(conn, step):
                raise AuthenticationFailed("this login step is spent; log in again")
            user = await session.get(User, user_id)
            used = None
            if user is not None and user.is_active:
                used = await factors.use_code(conn, self.box, user_id, code)
            if used is not None and user is not None:
                await challenges.spend(conn, step.jti)
                who = _as(user, actor)
                await record(conn, who, Action.AUTH_LOGIN, "user", user_id, {"second_factor": used})
                client = Client(actor.ip, user_agent)
                result = await self._issue(session, user, new_session=client, second_factor=True)
        if used is None:
            async with self._db.connection() as conn, conn.transaction():
                await challenges.failed(conn, step.jti)
                detail = {"step": "login"}
                await record(conn, actor, Action.AUTH_MFA_FAILED, "user", user_id, detail)
            raise AuthenticationFailed("the code is wrong, expired or already used")
        if self._code_throttle is not None:
            await self._code_throttle.succeeded(str(user_id), address)
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
        detail = {"family_id": str(row.family_id)}
        await self._end(actor, row.family_id, Action.AUTH_REFRESH_REUSE, row.user_id, detail)
        raise AuthenticationFailed("refresh token reuse detected; please log in again")

    async def logout(self, actor: Actor, *, family_id: uuid.UUID) -> None:
        """End this session: its refresh tokens and, at once, its access tokens."""
        await self._end(actor, family_id, Action.AUTH_LOGOUT, actor.user_id)

    async def sessions(self, user_id: uuid.UUID, current: uuid.UUID | None) -> list[SessionOut]:
        async with self._db.connection() as conn:
            rows = await sessions.open_for(conn, user_id)
        return [SessionOut(**dict(row), current=row["id"] == current) for row in rows]

    async def revoke_session(self, actor: Actor, session_id: uuid.UUID) -> None:
        """End one of the caller's own sessions (another user's: NotFound)."""
        if actor.user_id is None:
            raise AuthenticationFailed("a valid bearer token is required")
        detail = {"session_id": str(session_id)}
        ended = await self._end(
            actor,
            session_id,
            Action.AUTH_SESSION_REVOKED,
            actor.user_id,
            detail,
            owner=actor.user_id,
        )
        if not ended:
            raise NotFound("no such session")

    async def session_open(self, session_id: uuid.UUID) -> bool:
        """The database's word on a session, when Redis cannot give it."""
        async with self._db.connection() as conn:
            return await sessions.is_open(conn, session_id)

    async def _end(
        self,
        actor: Actor,
        session_id: uuid.UUID,
        action: Action,
        user_id: uuid.UUID | None,
        detail: dict[str, str] | None = None,
        *,
        owner: uuid.UUID | None = None,
    ) -> bool:
        async with self._db.connection() as conn, conn.transaction():
            ended = await sessions.end(conn, session_id, owner)
            if ended or owner is None:
                await record(conn, actor, action, "user", user_id, detail)
        if ended and self._revocations is not None:
            await self._revocations.mark(session_id)
        return ended

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
        self,
        session: AsyncSession,
        actor: Actor,
        credentials: Credentials,
        user_agent: str | None,
    ) -> AuthResult | LoginChallenge:
        user = await self._by_email(session, credentials.email)
        ok = await self.passwords.verify(user.password_hash if user else None, credentials.password)
        if not ok or user is None or not user.is_active:
            raise AuthenticationFailed("invalid email or password")
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.passwords.hash(credentials.password)
        who = _as(user, actor)
        if await factors.is_enabled(await driver_connection(session), user.id):
            await record_in(session, who, Action.AUTH_MFA_CHALLENGED, "user", user.id)
            return LoginChallenge(
                mfa_token=self.access_tokens.challenge(user.id),
                expires_in=self.access_tokens.challenge_ttl,
            )
        await record_in(session, who, Action.AUTH_LOGIN, "user", user.id)
        return await self._issue(session, user, new_session=Client(actor.ip, user_agent))

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
        return await self._issue(session, user, family_id=row.family_id, ip=actor.ip)

    async def _by_email(self, session: AsyncSession, email: str) -> User | None:
        return (
            await session.exec(select(User).where(sa.func.lower(User.email) == email.lower()))
        ).first()

    async def _issue(
        self,
        session: AsyncSession,
        user: User,
        *,
        new_session: Client | None = None,
        family_id: uuid.UUID | None = None,
        ip: str | None = None,
        second_factor: bool = False,
    ) -> AuthResult:
        """Tokens for ``user``: in a new session (login), or the next of ``family_id``."""
        conn = await driver_connection(session)
        refresh, expires_at = new_refresh_token(), utcnow() + self._refresh_ttl
        if family_id is None:
            family_id = uuid.uuid4()
            client = new_session or Client()
            await sessions.start(
                conn, family_id, user.id, expires_at, client, second_factor=second_factor
            )
        else:
            await sessions.touch(conn, family_id, expires_at, ip)
        session.add(
            RefreshToken(
                user_id=user.id,
                family_id=family_id,
                token_hash=hash_refresh_token(refresh),
                expires_at=expires_at,
            )
        )
        await session.flush()
        enrolling = (
            self._mfa_required
            and user.role in MFA_ROLES
            and not await factors.is_enabled(conn, user.id)
        )
        return AuthResult(
            user=UserOut.model_validate(user, from_attributes=True),
            access_token=self.access_tokens.issue(
                user.id, user.role, family_id, enrolling=enrolling
            ),
            refresh_token=refresh,
            expires_in=self.access_tokens.ttl,
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
