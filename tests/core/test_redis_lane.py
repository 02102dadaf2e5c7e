"""Commands run on connections the client keeps to itself (the lane), without the pool's
per-command poll, and under load those of one turn of the event loop go out together:
every caller gets its own reply, whatever happened to the others or to the one before."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from amrutam.dev.servers import RedisServer, free_port
from amrutam.infra.redis_client import Lane, Redis

# Echoes its argument after spinning for ARGV[2] milliseconds of Redis' own time.
_ECHO = """
local start = redis.call('TIME')
local stop = start[1] * 1000 + math.floor(start[2] / 1000) + tonumber(ARGV[2])
while true do
  local now = redis.call('TIME')
  if now[1] * 1000 + math.floor(now[2] / 1000) >= stop then break end
end
return ARGV[1]
"""


@pytest.fixture(scope="module")
def lane_redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis-lane", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(lane_redis: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(lane_redis.url(), socket_timeout=1.0, socket_connect_timeout=1.0)
    yield redis
    await redis.aclose()


async def test_commands_answer_as_through_the_pool(client: Redis) -> None:
    key = f"lane:{free_port()}"
    assert await client.set(key, b"v", nx=True, px=10_000) is True
    assert await client.set(key, b"w", nx=True, px=10_000) is None
    assert await client.get(key) == b"v"
    assert await client.incr(key + ":n") == 1
    assert await client.hset(key + ":h", mapping={"a": "1"}) == 1  # type: ignore[misc]
    assert await client.hgetall(key + ":h") == {b"a": b"1"}  # type: ignore[misc]
    script = client.register_script(_ECHO)
    assert await script(args=[b"one", 0]) == b"one"
    assert await client.execute_command("EVALSHA", script.sha, 0, b"one", 0) == b"one"
    await client.script_flush()  # as after a Redis restart: the script is loaded again
    assert await script(args=[b"two", 0]) == b"two"


async def test_commands_of_one_turn_go_out_together_and_keep_their_order(client: Redis) -> None:
    key = f"lane-order:{free_port()}"
    counts = await asyncio.gather(*(client.incr(key) for _ in range(50)))
    assert sorted(counts) == list(range(1, 51))  # every caller got its own reply
    # The first four went out at once, alone, on connections of their own (Redis serves
    # those in any order); the 46 others queued behind them, together, in their order.
    assert client.lane._made == client.batch_when_out + 1
    batched = counts[client.batch_when_out :]
    assert batched == sorted(batched)


async def test_an_error_reply_fails_only_its_own_caller(client: Redis) -> None:
    key = f"lane-error:{free_port()}"
    await client.set(key, b"a string")
    client.batch_when_out = 1  # the first goes out alone, the three others together
    script = client.register_script(_ECHO)
    await client.script_flush()  # the script's first call in the batch meets NOSCRIPT
    answers: tuple[Any, ...] = await asyncio.gather(
        client.get(key),
        client.execute_command("HGETALL", key),
        script(args=[b"echo", 0]),
        client.get(key),
        return_exceptions=True,
    )
    before, wrong, echoed, after = answers
    assert (before, echoed, after) == (b"a string", b"echo", b"a string")
    assert isinstance(wrong, ResponseError)
    assert "WRONGTYPE" in str(wrong)


async def test_a_caller_cancelled_before_its_reply_leaves_nothing_for_the_others(
    client: Redis,
) -> None:
    client.lane = Lane(client.connection_pool, size=2)
    client.batch_when_out = 1
    script = client.register_script(_ECHO)
    assert await script(args=[b"warm", 0]) == b"warm"
    first = asyncio.create_task(script(args=[b"first", 100]))  # goes out at once
    slow = asyncio.create_task(script(args=[b"slow", 200]))  # these two queue behind it,
    last = asyncio.create_task(script(args=[b"last", 0]))  # in one batch
    await asyncio.sleep(0.05)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert await first == b"first"
    assert await last == b"last"
    # The cancelled caller's reply was read and dropped: both connections stayed up, and
    # neither holds an unread reply.
    assert client.lane._made == 2
    for conn, _ in client.lane._idle:
        assert conn.is_connected
        await conn.send_command("PING")
        assert await conn.read_response() == b"PONG"


async def test_a_reply_that_came_too_late_is_not_read_by_the_next_caller(
    lane_redis: RedisServer, client: Redis
) -> None:
    client.lane = Lane(client.connection_pool, size=1)
    client.batch_when_out = 1
    script = client.register_script(_ECHO)
    assert await script(args=[b"warm", 0]) == b"warm"
    pid = int(lane_redis.pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)  # Redis hangs: the batch times out, its replies come later
    try:
        late = await asyncio.gather(
            script(args=[b"late", 0]), script(args=[b"later", 0]), return_exceptions=True
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    assert [type(error) for error in late] == [TimeoutError, TimeoutError]
    assert await script(args=[b"mine", 0]) == b"mine"


async def test_a_send_redis_does_not_take_in_times_out_and_spoils_nothing(
    lane_redis: RedisServer, client: Redis
) -> None:
    """The deadline bounds the send too: a value larger than the sockets' buffers cannot
    go out to a Redis that has stopped reading, and its unsent rest never reaches the
    next command."""
    client.lane = Lane(client.connection_pool, size=1)
    key = f"lane-big:{free_port()}"
    assert await client.set(key, b"small") is True
    pid = int(lane_redis.pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError):
            await client.set(key, b"x" * (64 << 20))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await client.get(key) == b"small"


async def test_a_connection_redis_closed_is_connected_anew_and_nothing_is_sent_twice(
    lane_redis: RedisServer, client: Redis
) -> None:
    client.lane = Lane(client.connection_pool, size=1)
    counter = client.register_script("return redis.call('INCR', KEYS[1])")
    key = f"lane-count:{free_port()}"
    assert await counter(keys=[key]) == 1
    admin = Redis.from_url(lane_redis.url())
    try:
        # Closed right after a use: the send goes out and its failure is the caller's;
        # the command is not sent again on another connection.
        await admin.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(ConnectionError):
            await counter(keys=[key])
        assert await counter(keys=[key]) == 2
        # Closed while idle for a while: polled first, as the pool would, and reconnected.
        await admin.client_kill_filter(_type="normal", skipme=True)
        await asyncio.sleep(1.2)
        assert await counter(keys=[key]) == 3
    finally:
        await admin.aclose()


async def test_a_batch_beyond_the_lane_goes_through_the_pool(client: Redis) -> None:
    client.lane = Lane(client.connection_pool, size=1)
    client.batch_when_out = 1
    script = client.register_script(_ECHO)
    slow = asyncio.create_task(script(args=[b"slow", 200]))  # holds the lane's connection
    await asyncio.sleep(0.05)
    answers = await asyncio.gather(*(script(args=[str(i).encode(), 0]) for i in range(8)))
    assert answers == [str(i).encode() for i in range(8)]
    assert await slow == b"slow"
    assert client.lane._made == 1
    assert len(client.connection_pool._available_connections) == 1  # back in the pool
