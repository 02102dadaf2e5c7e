"""Celery tasks: thin wrappers that run core use cases."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from amrutam.auth.service import AuthService
from amrutam.db import Database, create_engine
from amrutam.settings import get_settings
from workers.app import app


async def _purge() -> int:
    settings = get_settings()
    db = Database(create_engine(settings, "amrutam-worker"))
    try:
        async with db.transaction() as session:
            return await AuthService(settings).purge_expired_tokens(session, timedelta(days=7))
    finally:
        await db.dispose()


@app.task(name="workers.tasks.purge_expired_refresh_tokens")  # type: ignore[untyped-decorator]
def purge_expired_refresh_tokens() -> int:
    """Delete refresh tokens that expired more than a week ago."""
    return asyncio.run(_purge())
