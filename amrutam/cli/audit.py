"""``amrutam partitions ...`` and ``amrutam audit ...``: the audit trail's upkeep."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
import orjson

from amrutam.cli.common import admin_connection, run
from amrutam.settings import Settings

if TYPE_CHECKING:
    from amrutam.audit.service import AuditTrail


def _print(value: object) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@click.group()
def partitions() -> None:
    """The audit trail's time partitions."""


@partitions.command("maintain")
@click.option("--interval", type=click.Choice(["monthly", "weekly", "daily"]), default="monthly")
@click.option("--premake", type=click.IntRange(0, 120), default=3, show_default=True)
@click.option("--keep", type=click.IntRange(1, 10_000), default=None, help="intervals kept")
@click.option("--action", type=click.Choice(["detach", "drop"]), default="detach")
def partitions_maintain(interval: str, premake: int, keep: int | None, action: str) -> None:
    """Create partitions ahead, move default-partition rows, apply retention."""
    from amrutam.audit.partitions import INTERVALS, maintain

    async def apply(_: Settings) -> dict[str, object]:
        async with admin_connection() as conn:
            report = await maintain(
                conn, interval=INTERVALS[interval], premake=premake, keep=keep, action=action
            )
        return report.as_dict()

    _print(run(apply))


@partitions.command("status")
def partitions_status() -> None:
    """Horizon, partition count and rows waiting in the default partition."""
    from amrutam.audit.partitions import status

    async def read(_: Settings) -> dict[str, object]:
        async with admin_connection() as conn:
            return await status(conn)

    _print(run(read))


@click.group()
def audit() -> None:
    """The tamper-evident audit trail."""


@asynccontextmanager
async def _trail(settings: Settings) -> AsyncIterator[AuditTrail]:
    from amrutam.audit.service import AuditTrail
    from amrutam.infra.db import Database, create_engine

    db = Database(create_engine(settings, "amrutam-cli"))
    try:
        yield AuditTrail(db, settings.audit_signing_key.get_secret_value().encode())
    finally:
        await db.dispose()


@audit.command("seal")
def audit_seal() -> None:
    """Seal every closed hour of the trail that is not sealed yet."""

    async def seal(settings: Settings) -> int:
        async with _trail(settings) as trail:
            return await trail.seal()

    click.echo(f"{run(seal)} hour(s) sealed")


@audit.command("verify")
@click.option("--from", "start", type=click.DateTime(), default=None, help="UTC")
@click.option("--to", "end", type=click.DateTime(), default=None, help="UTC")
def audit_verify(start: datetime | None, end: datetime | None) -> None:
    """Recompute row hashes and seals; exit 1 if anything was tampered with."""

    async def verify(settings: Settings) -> dict[str, object]:
        async with _trail(settings) as trail:
            verdict = await trail.verify(
                None,
                start=start.replace(tzinfo=UTC) if start else None,
                end=end.replace(tzinfo=UTC) if end else None,
            )
        return verdict.as_dict()

    result = run(verify)
    _print(result)
    if not result["ok"]:
        sys.exit(1)


COMMANDS = (partitions, audit)
