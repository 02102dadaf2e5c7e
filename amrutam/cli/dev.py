"""``amrutam dev ...``: the local stack (PostgreSQL and Redis under .local/, the processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click

from amrutam.cli.audit import partitions_maintain
from amrutam.cli.common import PROJECT_ROOT
from amrutam.cli.data import migrate, seed
from amrutam.dev.stack import LocalStack
from amrutam.settings import get_settings


@click.group()
def dev() -> None:
    """The local stack: PostgreSQL and Redis under .local/, and the processes."""


def _stack(backups: bool = False) -> LocalStack:
    stack = LocalStack.from_settings(get_settings(), PROJECT_ROOT / ".local")
    if backups:
        stack.backups = PROJECT_ROOT / ".local" / "pgbackrest"
        stack.stanza = get_settings().backup_stanza
    return stack


_BACKUPS = click.option(
    "--backups", is_flag=True, help="archive WAL to a local pgBackRest repository (.local/)"
)


def _start(stack: LocalStack) -> None:
    from amrutam.backups.pgbackrest import BackupError
    from amrutam.dev.servers import ServiceError

    try:
        stack.up()
        if stack.backups is not None:
            click.echo(f"WAL archiving on; pgBackRest configuration: {stack.first_backup()}")
        elif (stack.postgres.datadir / "archiving.conf").exists():
            click.echo("WAL archiving stays on (turned on earlier with --backups)")
    except (ServiceError, BackupError) as exc:
        raise click.ClickException(str(exc)) from exc


@dev.command("up")
@_BACKUPS
def dev_up(backups: bool) -> None:
    """Start the local PostgreSQL and Redis."""
    _start(_stack(backups))
    settings = get_settings()
    click.echo(f"PostgreSQL: {settings.database_url}\nRedis:      {settings.redis_url}")


@dev.command("down")
def dev_down() -> None:
    """Stop the local PostgreSQL and Redis (their data is kept)."""
    _stack().down()


@dev.command("run")
@click.option("--procfile", default=str(PROJECT_ROOT / "Procfile"), show_default=True)
@_BACKUPS
def dev_run(procfile: str, backups: bool) -> None:
    """Start the services, migrate, seed, and run the API, worker and beat until Ctrl-C."""
    from amrutam.infra.system import port_in_use

    settings = get_settings()
    stack = _stack(backups)
    if port_in_use(settings.port, settings.host):
        raise click.ClickException(
            f"port {settings.port} is already in use: stop what holds it or set AMRUTAM_PORT"
        )
    _start(stack)
    try:
        ctx = click.get_current_context()
        ctx.invoke(migrate)
        ctx.invoke(partitions_maintain, interval="monthly", premake=3, keep=None, action="detach")
        ctx.invoke(seed)
        click.echo(f"serving on http://{settings.host}:{settings.port}  (Ctrl-C stops everything)")
        bindir = Path(sys.executable).parent
        env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
        proc = subprocess.Popen(
            [str(bindir / "honcho"), "start", "-f", procfile], cwd=PROJECT_ROOT, env=env
        )
        try:
            proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            proc.wait()
    finally:
        stack.down()
        click.echo("local stack stopped; data kept in .local/")


COMMANDS = (dev,)
