"""Password hashing: off the event loop, on a bounded pool of its own."""

from __future__ import annotations

import asyncio
import threading

from amrutam.auth.passwords import Passwords
from amrutam.settings import Settings


def _hashing_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("argon2")}


async def test_a_burst_of_hashes_runs_on_the_configured_threads_only() -> None:
    """Each hash holds argon2_memory_kib; as many threads as requests would hold that
    many buffers (the allocator keeps them after the burst)."""
    passwords = Passwords(Settings(argon2_time_cost=1, argon2_memory_kib=8192, argon2_threads=1))
    seen: set[str] = set()

    async def sample() -> None:
        while True:
            seen.update(_hashing_threads())
            await asyncio.sleep(0.001)

    sampler = asyncio.create_task(sample())
    hashes = await asyncio.gather(*(passwords.hash(f"secret-{n}") for n in range(8)))
    checks = await asyncio.gather(
        *(passwords.verify(h, f"secret-{n}") for n, h in enumerate(hashes))
    )
    sampler.cancel()
    assert all(checks)
    assert len(seen) == 1, seen
    assert not await passwords.verify(hashes[0], "secret-1")
