"""Celery tasks: thin wrappers that run core use cases."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg

from amrutam.audit.partitions import maintain
from amrutam.audit.service import AuditTrail
from amrutam.auth.service import AuthService
from amrutam.db import Database, create_engine
from amrutam.logs import get_logger
from amrutam.settings import get_settings
from workers.app import app

log = get_logger(__name__)


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


async def _maintain() -> dict[str, Any]:
    settings = get_settings()
    dsn = settings.database_admin_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        report = await maintain(conn, premake=3)
    finally:
        await conn.close()
    log.info("audit.partitions_maintained", **report.as_dict())
    return report.as_dict()


@app.task(name="workers.tasks.maintain_audit_partitions")  # type: ignore[untyped-decorator]
def maintain_audit_partitions() -> dict[str, Any]:
    """Keep three monthly audit partitions ahead, whatever the traffic."""
    return asyncio.run(_maintain())


async def _seal() -> int:
    settings = get_settings()
    db = Database(create_engine(settings, "amrutam-worker"))
    try:
        return await AuditTrail(db, settings.audit_signing_key.get_secret_value().encode()).seal()
    finally:
        await db.dispose()


@app.task(name="workers.tasks.seal_audit_trail")  # type: ignore[untyped-decorator]
def seal_audit_trail() -> int:
    """Seal the audit trail's closed hours (tamper evidence)."""
    return asyncio.run(_seal())
