"""The PostgreSQL engine and sessions (SQLAlchemy/SQLModel on asyncpg)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from amrutam.settings import Settings

# Driver errors that mean the connection (or the server) is gone, not the statement.
CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
)

# The role the API and workers log in as: INSERT/SELECT only on the audit trail.
APP_ROLE = "amrutam_app"

# Planner settings for an OLTP workload on SSD-backed storage (every managed PostgreSQL):
# JIT only costs on short statements, and random reads are nearly as cheap as
# sequential ones, so small indexed lookups beat scanning a small table.
SESSION_SETTINGS = {"jit": "off", "random_page_cost": "1.1"}


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+asyncpg://``) as the plain DSN asyncpg and libpq take
    (SQLAlchemy's ``ssl=`` query parameter is libpq's ``sslmode=``)."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return re.sub(r"([?&])ssl=", r"\1sslmode=", dsn)


@asynccontextmanager
async def connect(url: str, *, connect_timeout: float = 10) -> AsyncIterator[asyncpg.Connection]:
    """One plain asyncpg connection (the CLI, tasks, partition upkeep), always closed."""
    conn = await asyncpg.connect(libpq_dsn(url), timeout=connect_timeout)
    try:
        yield conn
    finally:
        await conn.close()


async def set_role_password(conn: asyncpg.Connection, role: str, password: str) -> None:
    """``ALTER ROLE ... PASSWORD``, which takes no bind parameter: the server quotes it."""
    statement = await conn.fetchval(
        "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", role, password
    )
    await conn.execute(statement)


def create_engine(settings: Settings, application_name: str = "amrutam") -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # A restarted server leaves dead connections in the pool: SQLAlchemy notices the
        # disconnect on first use and discards the whole pool, so one request fails
        # (mapped to 503) instead of paying a pre-ping round trip on every checkout.
        pool_pre_ping=False,
        pool_recycle=1800,
        # A failed statement's parameters (password hashes, names) stay out of the logs.
        hide_parameters=True,
        connect_args={
            "server_settings": {
                **SESSION_SETTINGS,
                "application_name": application_name,
                "statement_timeout": str(settings.db_statement_timeout_ms),
            },
            "timeout": 5,
        },
    )


class Database:
    """One engine per process and a factory of short-lived sessions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on any error."""
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The pool's raw asyncpg connection, for hot paths where ORM overhead costs."""
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            try:
                yield raw.driver_connection
            except CONNECTION_LOST:
                # SQLAlchemy cannot see errors raised by the driver directly: tell the
                # pool, so this dead connection is discarded instead of handed out again.
                await conn.invalidate()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()
