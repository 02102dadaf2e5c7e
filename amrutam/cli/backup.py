"""``amrutam backup ...``: pgBackRest backups and restores of the database."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import click

from amrutam.backups import drill, status
from amrutam.backups.pgbackrest import BackupError, PgBackRest
from amrutam.cli.common import PROJECT_ROOT, admin_connection, run
from amrutam.settings import Settings, get_settings


@click.group()
def backup() -> None:
    """pgBackRest backups of the database (AMRUTAM_BACKUP_CONFIG, AMRUTAM_BACKUP_STANZA)."""


def _repo() -> PgBackRest:
    settings = get_settings()
    config = Path(settings.backup_config)
    if not config.is_absolute():
        config = PROJECT_ROOT / config
    if not config.exists():
        raise click.ClickException(
            f"no pgBackRest configuration at {config}: run `make run BACKUPS=1` for the "
            "local stack, or set AMRUTAM_BACKUP_CONFIG"
        )
    return PgBackRest(config, settings.backup_stanza)


def _step(step: Callable[[PgBackRest], None], done: str) -> None:
    try:
        step(_repo())
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(done)


@backup.command("stanza-create")
def backup_stanza_create() -> None:
    """Initialise the repository for this database (safe to repeat)."""
    _step(lambda r: r.stanza_create(), "stanza ready")


@backup.command("check")
def backup_check() -> None:
    """Check the configuration and that WAL reaches the archive."""
    _step(lambda r: r.check(), "archiving works")


@backup.command("full")
def backup_full() -> None:
    """Take a full backup."""
    _step(lambda r: r.backup("full"), "full backup taken")


@backup.command("diff")
def backup_diff() -> None:
    """Take a differential backup (changes since the last full)."""
    _step(lambda r: r.backup("diff"), "differential backup taken")


@backup.command("incr")
def backup_incr() -> None:
    """Take an incremental backup (changes since the last backup of any type)."""
    _step(lambda r: r.backup("incr"), "incremental backup taken")


async def _last_archived(_: Settings) -> datetime | None:
    import asyncpg

    try:
        async with admin_connection(connect_timeout=5) as conn:
            return (await status.archiver(conn)).last_archived
    except (OSError, asyncpg.PostgresError):
        return None


def _window() -> tuple[list[status.Backup], status.Window | None]:
    try:
        found = status.backups(_repo().info())
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    return found, status.window(found, run(_last_archived))


@backup.command("info")
def backup_info() -> None:
    """The backups in the repository and the recovery window, in plain words."""
    found, window = _window()
    if window is None:
        click.echo("No backups yet: nothing can be restored. Run `amrutam backup full`.")
        return
    click.echo(window.describe())
    for kind, last in status.latest_by_kind(found).items():
        click.echo(
            f"Last {kind} backup: {last.label}, finished {status.iso(last.finished)}, "
            f"{last.size / 2**20:.1f} MiB ({last.repo_size / 2**20:.1f} MiB in the repository)"
        )
    click.echo(
        f"{len(found)} backups, {status.repo_size(found) / 2**20:.1f} MiB in the repository."
    )


@backup.command("restore")
@click.option("--to", "target", required=True, help="an ISO time (UTC if no offset) or 'latest'")
@click.option("--into", type=click.Path(path_type=Path), required=True, help="a new data directory")
def backup_restore(target: str, into: Path) -> None:
    """Restore into a new data directory, never over the running database."""
    from amrutam.infra.system import chown_to_postgres

    if into.exists() and any(into.iterdir()):
        raise click.ClickException(f"{into} is not empty: restore into a new directory")
    repo = _repo()
    with contextlib.suppress(BackupError):
        repo.check()  # pushes the current WAL segment, so "just now" is reachable
    _, window = _window()
    if window is None:
        raise click.ClickException("no backups to restore from")
    when = None
    if target != "latest":
        try:
            moment = datetime.fromisoformat(target)
        except ValueError as exc:
            raise click.BadParameter("an ISO 8601 time or 'latest'", param_hint="--to") from exc
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if not window.contains(moment):
            raise click.ClickException(
                f"{target} is outside the recovery window. {window.describe()}"
            )
        when = moment
    into.mkdir(parents=True, exist_ok=True)
    into.chmod(0o700)
    chown_to_postgres(into)
    try:
        repo.restore(into, when)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored into {into}; start it with archive_mode=off on a free port")


@backup.command("probe")
@click.option("--socket-dir", "run_dir", type=click.Path(path_type=Path), required=True)
@click.option("--database", default="amrutam", show_default=True)
@click.option("--result", type=click.Path(path_type=Path), help="also write the JSON here")
@click.option("--wait", "wait_s", default=6 * 3600.0, show_default=True)
@click.option("--signing-key", envvar="AMRUTAM_AUDIT_SIGNING_KEY", required=True)
def backup_probe(
    run_dir: Path, database: str, result: Path | None, wait_s: float, signing_key: str
) -> None:
    """A drill's probe: wait for the restored server beside it, count the main tables'
    rows and verify the audit seal chain; exits non-zero when the chain does not verify."""
    try:
        drill.wait_for_restore(run_dir, wait_s)
        found = asyncio.run(drill.read_copy(run_dir, database, signing_key.encode()))
    except drill.DrillError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        (run_dir / "probed").touch()  # the restore program may stop the server now
    text = json.dumps(found, sort_keys=True)
    click.echo(text)
    if result is not None:
        result.write_text(text)
    if not found["ok"]:
        raise click.ClickException("the restored audit trail does not verify")


@backup.command("drill")
def backup_drill() -> None:
    """Restore the latest backup into a temporary directory with the Jobs' own restore
    program, boot it, probe it, and print the measured recovery time and point."""
    from amrutam.dev.servers import pg_bindir

    settings = get_settings()
    database = urlsplit(settings.database_admin_url).path.lstrip("/")
    key = settings.audit_signing_key.get_secret_value().encode()
    try:
        report = drill.local(_repo(), database, key, pg_bindir())
    except drill.DrillError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(drill.describe(report))
    if not report["probe"]["ok"]:
        raise click.ClickException("the restored audit trail does not verify")


COMMANDS = (backup,)
