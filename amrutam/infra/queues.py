"""Celery queue depth on the Redis broker: queued + reserved + active tasks per queue.

With late acknowledgement a task a worker has prefetched or is running stays in the
broker's ``unacked`` hash until it finishes, so waiting (the queue's list) plus
``unacked`` entries routed to the queue counts every task not finished yet — what the
scaling policy needs, and what a count of the list alone misses.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

# kombu's Redis transport spreads priorities over keys "<queue>", "<queue>\x06\x163", ...
_PRIORITY_SUFFIXES = ["", *[f"\x06\x16{p}" for p in (3, 6, 9)]]


async def queue_depth(redis: Redis, queues: list[str]) -> dict[str, int]:
    async with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        lengths = await pipe.execute()
    depth = {
        queue: sum(lengths[i * len(_PRIORITY_SUFFIXES) : (i + 1) * len(_PRIORITY_SUFFIXES)])
        for i, queue in enumerate(queues)
    }
    async for _, raw in redis.hscan_iter("unacked"):
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key in depth:
            depth[routing_key] += 1
    return depth
