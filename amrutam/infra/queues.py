"""Celery queue depth on the Redis broker: queued + reserved + active tasks per queue.

With late acknowledgement a task a worker has prefetched or is running stays in the
broker's ``unacked`` hash until it finishes, so waiting (the queue's list) plus
``unacked`` entries routed to the queue counts every task not finished yet — what the
scaling policy needs, and what a count of the list alone misses. A task a worker holds
until its ETA (a retry's countdown) is not work to do now: more workers would not run it
sooner, so it is not counted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from amrutam.infra.deadletters import Publish

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
    now = datetime.now(UTC)
    async for _, raw in redis.hscan_iter("unacked"):
        try:
            message, _, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if routing_key in depth and not _waiting_for_eta(message, now):
            depth[routing_key] += 1
    return depth


def _waiting_for_eta(message: Any, now: datetime) -> bool:
    eta = ((message or {}).get("headers") or {}).get("eta") if isinstance(message, dict) else None
    if not eta:
        return False
    try:
        moment = datetime.fromisoformat(eta)
    except (TypeError, ValueError):
        return False
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) > now


def publisher(broker_url: str) -> Publish:
    """Publish tasks by name to the broker, from outside a worker (the CLI)."""
    from celery import Celery

    app = Celery("amrutam-publisher", broker=broker_url)

    def publish(task_name: str, args: list[Any], queue: str) -> None:
        app.send_task(task_name, args=args, queue=queue)

    return publish
