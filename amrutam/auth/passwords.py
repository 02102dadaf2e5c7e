"""Argon2id password hashing, off the event loop (it is deliberately CPU-heavy).

Hashes run on a small thread pool of their own (``argon2_threads``, one by default: an
API process has about one core). Each hash holds ``argon2_memory_kib`` (19 MiB) while it
runs, and the C allocator keeps what a thread used, so asyncio's default pool (up to six
threads here) left a process about 100 MB larger after a burst of logins.

Even one thread kept a hash's memory: glibc gives a block of 128 KiB or more its own
mapping, returned when freed, but then raises that threshold to the size of the block
freed, so every later hash came from the heap and its 19 MiB stayed there. The threshold
is kept at 128 KiB: after one registration and a run of every bench scenario, a
one-worker API held 131 MB of PSS, and 113 MB with the threshold kept.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from amrutam.settings import Settings

T = TypeVar("T")

_M_MMAP_THRESHOLD = -3  # mallopt's parameter (glibc's malloc.h)
_MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept from moving


def _give_back_large_blocks() -> None:
    """Keep glibc's mmap threshold where it starts (see the module docstring)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:  # (not on every C library)
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)


class Passwords:
    def __init__(self, settings: Settings) -> None:
        _give_back_large_blocks()
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=1,
        )
        self._threads = ThreadPoolExecutor(settings.argon2_threads, thread_name_prefix="argon2")
        # Verified against when the account does not exist, so an unknown email costs
        # the same time as a wrong password and does not reveal which one it was.
        self._decoy = self._hasher.hash("decoy-password-never-matches")

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    async def _off_loop(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, work)

    async def hash(self, password: str) -> str:
        return await self._off_loop(lambda: self._hasher.hash(password))

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password) and (
                    password_hash is not None
                )
            except (VerificationError, InvalidHashError):
                return False

        return await self._off_loop(check)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
