"""What every command group shares: running a coroutine with the settings, the project root."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from amrutam.infra.db import connect
from amrutam.settings import Settings, get_settings

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run(make: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make(get_settings()))


@asynccontextmanager
async def admin_connection(connect_timeout: float = 10) -> AsyncIterator[asyncpg.Connection]:
    """The owner role's connection: DDL, partitions, role passwords."""
    async with connect(get_settings().database_admin_url, connect_timeout=connect_timeout) as conn:
        yield conn


@asynccontextmanager
async def app_connection() -> AsyncIterator[asyncpg.Connection]:
    """The application role's connection, as the API and workers use."""
    async with connect(get_settings().database_url) as conn:
        yield conn
