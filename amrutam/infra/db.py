"""The PostgreSQL engine and sessions (SQLAlchemy/SQLModel on asyncpg)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn
from sqlmodel.ext.asyncio.session import AsyncSession

from amrutam.infra.metrics import DB_WAITS
from amrutam.settings import Settings

# Driver errors that mean the connection (or the server) is gone, not the statement. The
# last is a connection whose server shut down in the middle of an answer: asyncpg still
# waits for the end of that answer, so the connection cannot be used again.
CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
    asyncpg.InternalClientError,
)

# Errors that mean "no usable primary right now", which a short wait may cure: the server
# is down, starting or stopping, or (after a failover) the host answering is a standby.
# A statement refused on a read-only server never ran, so its transaction committed nothing.
OUTAGE = (
    *CONNECTION_LOST,
    asyncpg.TargetServerAttributeNotMatched,
    asyncpg.ReadOnlySQLTransactionError,
)


@dataclass
class Attempt:
    """One try at a request's database work: until when it may wait for the database (a
    loop time), and whether it has sent a COMMIT (after which losing the connection
    leaves the outcome unknown, so the work must not simply be done again)."""

    deadline: float
    commit_sent: bool = False


_Conn = TypeVar("_Conn")

# Set by the API per request, so that every wait inside it shares one deadline.
current_attempt: ContextVar[Attempt | None] = ContextVar("db_attempt", default=None)


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection, noting on the current attempt when a COMMIT is sent (both
    asyncpg's and SQLAlchemy's transactions commit through ``execute``)."""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109 (asyncpg's signature)
        attempt = current_attempt.get()
        if attempt is not None and query.lstrip()[:6].upper() == "COMMIT":
            attempt.commit_sent = True
        return await super().execute(query, *args, timeout=timeout)  # type: ignore[no-any-return]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors under it (SQLAlchemy wraps the driver's in ``orig``)."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = getattr(seen, "orig", None) or seen.__cause__


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is away for now (see ``OUTAGE``)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return any(isinstance(e, OUTAGE) for e in _chain(exc))


def is_read_only(exc: BaseException) -> bool:
    """A write reached a server that is (now) a standby: the pool points at a demoted
    primary and must be refilled."""
    return any(isinstance(e, asyncpg.ReadOnlySQLTransactionError) for e in _chain(exc))


# The role the API and workers log in as: INSERT/SELECT only on the audit trail.
APP_ROLE = "amrutam_app"

# Planner settings for an OLTP workload on SSD-backed storage (every managed PostgreSQL):
# JIT only costs on short statements, and random reads are nearly as cheap as
# sequential ones, so small indexed lookups beat scanning a small table.
SESSION_SETTINGS = {"jit": "off", "random_page_cost": "1.1"}


def libpq_dsn(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+asyncpg://``) as the plain DSN asyncpg and libpq take:
    SQLAlchemy's ``ssl=`` is libpq's ``sslmode=``, and its multi-host form
    (``@/db?host=a:5432&host=b:5432``) is libpq's ``@a:5432,b:5432/db``."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    dsn = re.sub(r"([?&])ssl=", r"\1sslmode=", dsn)
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    hosts = [value for key, value in query if key == "host"]
    if not hosts:
        return dsn
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (userinfo + "@" if userinfo else "") + ",".join(hosts)
    rest = urlencode([(key, value) for key, value in query if key != "host"])
    return urlunsplit((parts.scheme, netloc, parts.path, rest, parts.fragment))


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
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        # A restarted server leaves dead connections in the pool. No pre-ping round trip
        # on every checkout: asyncpg sees the server close an idle connection, and
        # ``_discard_closed`` replaces such a connection as it is checked out.
        pool_pre_ping=False,
        pool_recycle=1800,
        # A failed statement's parameters (password hashes, names) stay out of the logs.
        hide_parameters=True,
        connect_args={
            "connection_class": _Connection,
            "server_settings": {
                **SESSION_SETTINGS,
                "application_name": application_name,
                "statement_timeout": str(settings.db_statement_timeout_ms),
            },
            "timeout": 5,
        },
    )
    event.listen(engine.sync_engine, "checkout", _discard_closed)
    event.listen(engine.sync_engine, "handle_error", _outage_is_a_disconnect)
    return engine


def _outage_is_a_disconnect(context: Any) -> None:
    """SQLAlchemy counts an error as a disconnect only once asyncpg has closed the
    connection; a server that is shutting down answers first and closes after. Such a
    connection is dropped, not put back in the pool."""
    if is_outage(context.original_exception):
        context.is_disconnect = True


def _discard_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection the server has closed (a restart, a failover) is replaced by a
    new one before anyone uses it (SQLAlchemy reconnects on ``DisconnectionError``)."""
    if dbapi_connection.driver_connection.is_closed():
        raise sqlalchemy.exc.DisconnectionError("the server closed this pooled connection")


class Database:
    """One engine per process and a factory of short-lived sessions.

    Getting a connection waits through a short outage (a restart, a failover) for up to
    ``wait_s`` seconds: nothing has been sent yet, so waiting is safe for any request.
    """

    def __init__(self, engine: AsyncEngine, wait_s: float = 0.0) -> None:
        self.engine = engine
        self.wait_s = wait_s

    async def _connect(self, connect: Callable[[], Awaitable[_Conn]]) -> _Conn:
        loop = asyncio.get_running_loop()
        attempt = current_attempt.get()
        deadline = attempt.deadline if attempt else loop.time() + self.wait_s
        pause, waited = 0.05, False
        while True:
            try:
                conn = await connect()
            except Exception as exc:
                if not is_outage(exc) or loop.time() + pause > deadline:
                    raise
            else:
                if waited:
                    DB_WAITS.labels("connected").inc()
                return conn
            waited = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.4)

    async def _demoted(self) -> None:
        """A write reached a standby: every pooled connection is to the demoted primary,
        so start afresh (target_session_attrs finds the new one)."""
        await self.engine.dispose()

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[AsyncConnection]:
        conn = await self._connect(self.engine.connect)
        try:
            yield conn
        except Exception as exc:
            if is_read_only(exc):
                await conn.invalidate()
                await self._demoted()
            raise
        finally:
            await conn.close()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._connected() as conn, AsyncSession(conn, expire_on_commit=False) as s:
            yield s

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on any error."""
        async with self.session() as session, session.begin():
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The pool's raw asyncpg connection, for hot paths where ORM overhead costs.

        Taken from and returned to SQLAlchemy's pool itself, not through its engine and
        connection wrappers: each of their steps is a greenlet switch (≈ 20 µs of CPU here),
        and a checkout and return cost 178 µs through them against 77 µs through the pool."""
        pooled = await self._connect(lambda: greenlet_spawn(self.engine.sync_engine.pool.connect))
        try:
            yield pooled.driver_connection
        except Exception as exc:
            # SQLAlchemy cannot see errors raised by the driver directly: tell the pool, so
            # a dead connection is discarded instead of handed out again.
            if is_read_only(exc) or isinstance(exc, CONNECTION_LOST):
                await greenlet_spawn(pooled.invalidate)
            if is_read_only(exc):
                await self._demoted()
            raise
        finally:
            await greenlet_spawn(pooled.close)

    async def dispose(self) -> None:
        await self.engine.dispose()
