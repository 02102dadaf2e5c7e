"""The shared asyncio Redis client: short timeouts so an outage fails fast, and commands
sent without the pool's per-command overhead.

Each command through redis-py's pool takes the pool's lock, polls the socket for stray
data (``can_read_destructive``) and goes through the retry wrapper: together more than
the sending and the reading (measured on one core with 32 callers: a script call took
210 µs of CPU through the pool, 85 µs on the lane). So the client keeps connections of
its own (a ``Lane``).

Under load, the commands callers send in one turn of the event loop go out together, in
one write on one lane connection, and one task reads their replies in order and hands
each to its caller (a pipeline, as ioredis' auto-pipelining does). A turn then carries
several requests' commands, and each batch costs one send, one wake-up and one deadline
instead of one per command (measured at 32 connections: a cached search 12 % less CPU,
a slot listing 38 %, a booking 26 %). While few batches are out, a command goes out at
once, alone, as before: a small batch would cost more than it saves.

The pool's poll exists to catch a reply left unread by an interrupted caller. On the
lane none can be left: a caller that gives up leaves its reply to the batch, which reads
and drops it; a batch that does not finish (timeout, error, cancellation) disconnects its
connection, and the lane takes a connection back only after every reply was read or it
has disconnected; a disconnected one connects again on its next use. A connection idle
for a while is polled as the pool would, so one that Redis closed meanwhile is not used
blind.

A batch is bounded as a whole, its send and its replies under one deadline, the client's
socket timeout (redis-py would bound each send with ``asyncio.wait_for``, a new task per
command); the lane's connections have no timeout of their own.

The lane packs commands with hiredis, as redis-py's synchronous connections do (its
asyncio ones pack in Python): the same bytes at a fifth of the cost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis as _Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.commands.core import AsyncScript
from redis.connection import HiredisRespSerializer

from amrutam.settings import Settings

_CHECK_AFTER_IDLE_S = 1.0
# Commands queue for a batch only while this many batches are out. Below it, a batch
# would hold one or two commands, and its task and the turn it waits cost more than they
# save (at 4 connections, batching every command raised a cached search's CPU by 7 % and
# its p99 from 2.3 to 3.4 ms).
_BATCH_WHEN_OUT = 4


class Lane:
    """Connections of a client's own, each carrying one batch of commands and their
    replies at a time: as many as the pool may open (``size``); a batch beyond them goes
    through the pool."""

    def __init__(self, pool: ConnectionPool, size: int | None = None) -> None:
        self._pool = pool
        self._size = size or pool.max_connections
        self._idle: list[tuple[AbstractConnection, float]] = []
        self._made = 0
        self.timeout_s: float | None = pool.connection_kwargs.get("socket_timeout")
        self.pack = HiredisRespSerializer().pack

    def take(self) -> tuple[AbstractConnection, bool] | None:
        """A connection for one batch and whether to check it first (it was idle a
        while), or None when all of them are in use."""
        if self._idle:
            conn, idle_since = self._idle.pop()
            return conn, time.monotonic() - idle_since > _CHECK_AFTER_IDLE_S
        if self._made < self._size:
            self._made += 1
            made: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            made.socket_timeout = None  # the batch's deadline bounds it (Redis._exchange)
            return made, False
        return None

    def give_back(self, conn: AbstractConnection) -> None:
        """After every reply of its batch was read, or after it disconnected itself."""
        self._idle.append((conn, time.monotonic()))

    @staticmethod
    async def check(conn: AbstractConnection) -> None:
        """The pool's check, for a connection idle a while: one Redis closed (a restart,
        its idle timeout) is connected anew before a command is sent on it. A command is
        never sent twice: after a send, a failure goes to the caller."""
        try:
            if conn.is_connected and await conn.can_read_destructive():  # type: ignore[no-untyped-call]
                await conn.disconnect()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
            await conn.disconnect()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.disconnect()


@dataclass(slots=True)
class _Command:
    packed: list[bytes]
    name: Any
    options: dict[str, Any]
    parse: bool
    reply: asyncio.Future[Any]


class Redis(_Redis):
    """redis-py's asyncio client whose commands run on a ``Lane``, under load those of one
    turn of the event loop together (pipelines, which take their own connection, still
    use the pool)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lane = Lane(self.connection_pool)
        self._batch: list[_Command] | None = None
        self._exchanges: set[asyncio.Task[None]] = set()
        self._out = 0  # batches sent, or being sent, whose replies are not all read
        self.batch_when_out = _BATCH_WHEN_OUT

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self._run(args, options, parse=True)

    async def evalsha_raw(self, sha: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA without redis-py's reply callbacks (none applies to a script), the
        request path's most frequent command: a quarter less CPU than through them."""
        return await self._run(("EVALSHA", sha, len(keys), *keys, *args), {}, parse=False)

    async def _run(self, args: tuple[Any, ...], options: dict[str, Any], parse: bool) -> Any:
        """Send the command at once, alone, while few batches are out; else queue it for
        this turn's batch, whose exchange runs after every caller ready in this turn has
        queued its own. A queued caller cancelled meanwhile leaves its reply to the
        exchange, which reads it and drops it."""
        command = _Command(
            self.lane.pack(*args),
            args[0],
            options,
            parse,
            asyncio.get_running_loop().create_future(),
        )
        if self._batch is not None:
            self._batch.append(command)
        elif self._out < self.batch_when_out:
            await self._exchange([command])
            return command.reply.result()
        else:
            self._batch = [command]
            exchange = asyncio.create_task(self._exchange_queued())
            self._exchanges.add(exchange)
            exchange.add_done_callback(self._exchanges.discard)
        return await command.reply

    async def _exchange_queued(self) -> None:
        batch, self._batch = self._batch or [], None
        await self._exchange(batch)

    async def _exchange(self, batch: list[_Command]) -> None:
        """Send the batch in one write and hand each reply to its caller, under one
        deadline for them all. A batch that stops before every reply was read (deadline,
        error, cancellation) disconnects its connection: nothing is left on it for the
        next batch."""
        self._out += 1
        taken = self.lane.take()
        conn, idle_long = taken if taken is not None else (None, False)
        done = 0
        try:
            async with asyncio.timeout(self.lane.timeout_s):
                if conn is None:
                    conn = await self.connection_pool.get_connection()  # type: ignore[no-untyped-call]
                elif idle_long:
                    await self.lane.check(conn)
                packed = [part for command in batch for part in command.packed]
                await conn.send_packed_command(packed, check_health=False)
                for command in batch:
                    try:
                        if command.parse:
                            reply = await self.parse_response(conn, command.name, **command.options)  # type: ignore[arg-type]
                        else:
                            reply = await conn.read_response()
                    except redis_errors.ResponseError as exc:  # its own: the rest follow
                        _settle(command.reply, error=exc)
                    else:
                        _settle(command.reply, reply)
                    done += 1
        except TimeoutError:
            error: BaseException = redis_errors.TimeoutError(
                f"no answer from Redis in {self.lane.timeout_s} s"
            )
        except Exception as exc:
            error = exc
        except BaseException:
            for command in batch:
                command.reply.cancel()
            raise
        else:
            return
        finally:
            self._out -= 1
            if conn is not None and done < len(batch):
                await conn.disconnect(nowait=True)  # replies left unread: nobody may read them
            if taken is not None:
                self.lane.give_back(taken[0])
            elif conn is not None:
                await self.connection_pool.release(conn)
        for command in batch[done:]:
            _settle(command.reply, error=error)

    def register_script(self, script: str | bytes) -> AsyncScript:  # type: ignore[override]
        return Script(self, script)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await asyncio.gather(*self._exchanges, return_exceptions=True)
        await self.lane.aclose()
        await super().aclose(close_connection_pool)


class Script(AsyncScript):
    """A registered script, run with ``Redis.evalsha_raw`` (loaded again when Redis has
    lost it, as redis-py's own does)."""

    registered_client: Redis

    async def __call__(  # type: ignore[override]
        self,
        keys: Sequence[Any] | None = None,
        args: Sequence[Any] | None = None,
        client: _Redis | None = None,
    ) -> Any:
        redis = self.registered_client
        if client is not None and client is not redis:
            return await super().__call__(keys, args, client)
        keys, args = keys or (), args or ()
        try:
            return await redis.evalsha_raw(self.sha, keys, args)
        except redis_errors.NoScriptError:
            self.sha = await redis.script_load(self.script)
            return await redis.evalsha_raw(self.sha, keys, args)


def _settle(
    reply: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    if reply.done():  # its caller was cancelled
        return
    if error is not None:
        reply.set_exception(error)
    else:
        reply.set_result(result)


def create_redis(settings: Settings) -> Redis:
    client: Redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        max_connections=64,
        decode_responses=False,
    )
    return client
