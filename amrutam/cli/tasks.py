"""``amrutam tasks ...``: background tasks that failed for good (the dead-letter store)."""

from __future__ import annotations

import uuid
from typing import Any

import click

from amrutam.cli.common import app_connection, run
from amrutam.settings import Settings, get_settings


@click.group()
def tasks() -> None:
    """Background tasks that failed for good (the dead-letter store)."""


@tasks.command("dead")
def tasks_dead() -> None:
    """List tasks that exhausted their retries and were not requeued."""
    from amrutam.infra import deadletters

    async def read(_: Settings) -> list[dict[str, Any]]:
        async with app_connection() as conn:
            return await deadletters.pending(conn)

    rows = run(read)
    for row in rows:
        click.echo(
            f"{row['id']}  {row['failed_at']:%Y-%m-%d %H:%M:%S}  {row['task_name']}  "
            f"{row['args']}  {row['error']}"
        )
    click.echo(f"{len(rows)} dead task(s)")


@tasks.command("retry")
@click.argument("ids", nargs=-1, type=click.UUID)
@click.option("--all", "everything", is_flag=True, help="requeue every dead task")
def tasks_retry(ids: tuple[uuid.UUID, ...], everything: bool) -> None:
    """Requeue dead tasks (by id, or --all) with a fresh set of retries."""
    from amrutam.infra.queues import publisher
    from amrutam.notifications.service import requeue_dead

    if not ids and not everything:
        raise click.UsageError("name the dead tasks to retry, or pass --all")
    publish = publisher(get_settings().redis_url)

    async def requeue(_: Settings) -> int:
        async with app_connection() as conn:
            return await requeue_dead(conn, list(ids) if ids else None, publish)

    click.echo(f"{run(requeue)} task(s) requeued")


COMMANDS = (tasks,)
