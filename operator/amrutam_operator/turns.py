"""A resource's timer polls and its deletion take turns.

kopf runs a deleted resource's ``on.delete`` handlers while its timer may still be
polling: it only asks the timer to stop, and a poll may even begin after. What such a
poll leaves behind (a drained pod, a metric series) would outlive the deletion handler
that was to remove it. So the two take turns on one lock in the resource's memo (kopf
keeps one memo per object, shared by its handlers), and no poll acts after the deletion.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import kopf

Poll = Callable[..., Awaitable[None]]


def _lock(memo: kopf.Memo) -> asyncio.Lock:
    lock: asyncio.Lock = memo.setdefault("turn", asyncio.Lock())
    return lock


def poll(fn: Poll) -> Poll:
    """A timer handler that waits its turn, and does nothing once its resource is deleted."""

    @functools.wraps(fn)
    async def in_turn(memo: kopf.Memo, **kwargs: Any) -> None:
        async with _lock(memo):
            if not memo.get("deleted"):
                await fn(memo=memo, **kwargs)

    return in_turn


@asynccontextmanager
async def deletion(memo: kopf.Memo) -> AsyncIterator[None]:
    """The deletion handler's turn: after a poll in flight, and before none."""
    async with _lock(memo):
        memo["deleted"] = True
        yield
