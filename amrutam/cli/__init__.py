"""The ``amrutam`` admin command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from amrutam.settings import Settings, get_settings

if TYPE_CHECKING:
    from amrutam.audit.service import AuditTrail
    from amrutam.backups.pgbackrest import PgBackRest
    from amrutam.backups.status import Backup, Window
    from amrutam.dev.stack import LocalStack
    from amrutam.infra.db import Database

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _run(make: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make(get_settings()))


@click.group()
def main() -> None:
    """Amrutam administration."""


@main.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from amrutam.infra.migrate import upgrade

    upgrade(get_settings().database_admin_url)
    click.echo("database is at the latest migration")


@main.command("app-role-password")
@click.option(
    "--password",
    envvar="AMRUTAM_APP_ROLE_PASSWORD",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="or AMRUTAM_APP_ROLE_PASSWORD",
)
def app_role_password(password: str) -> None:
    """Set the login password of the application role (amrutam_app), as an administrator."""
    import asyncpg

    async def run(_: Settings) -> None:
        conn = await asyncpg.connect(_admin_connection_url())
        try:
            # ALTER ROLE takes no bind parameters: quote the literal in the server.
            statement = await conn.fetchval(
                "SELECT format('ALTER ROLE amrutam_app PASSWORD %L', $1::text)", password
            )
            await conn.execute(statement)
        finally:
            await conn.close()

    _run(run)
    click.echo("amrutam_app password set")


@main.command("create-admin")
@click.option("--email", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--full-name", default="Administrator", show_default=True)
def create_admin(email: str, password: str, full_name: str) -> None:
    """Create an administrator (the only way to get one)."""
    from pydantic import TypeAdapter, ValidationError
    from pydantic.networks import EmailStr

    from amrutam.auth.models import Role
    from amrutam.auth.schemas import PASSWORD_MIN
    from amrutam.auth.service import AuthService
    from amrutam.errors import Conflict
    from amrutam.infra.db import Database, create_engine

    try:
        TypeAdapter(EmailStr).validate_python(email)
    except ValidationError as exc:
        raise click.BadParameter("not a valid email address", param_hint="--email") from exc
    if len(password) < PASSWORD_MIN:
        raise click.BadParameter(f"at least {PASSWORD_MIN} characters", param_hint="--password")

    async def create(settings: Settings) -> None:
        db = Database(create_engine(settings, "amrutam-cli"))
        try:
            async with db.transaction() as session:
                await AuthService(settings).create_user(
                    session,
                    email=email,
                    password=password,
                    full_name=full_name,
                    role=Role.admin,
                )
        finally:
            await db.dispose()

    try:
        _run(create)
    except Conflict as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(f"admin {email.lower()} created")


@main.command()
@click.option("--doctors", type=click.IntRange(0), default=0, help="scale: seeded doctors")
@click.option("--patients", type=click.IntRange(0), default=0, help="scale: seeded patients")
@click.option(
    "--days",
    type=click.IntRange(0, 92),
    default=14,
    show_default=True,
    help="scale: days of open slots per doctor (8 a day)",
)
@click.option("--audit-rows", type=click.IntRange(0), default=0, help="scale: audit rows")
def seed(doctors: int, patients: int, days: int, audit_rows: int) -> None:
    """Load demo data; with --doctors/--patients, data at scale too (COPY, idempotent)."""
    if doctors or patients or audit_rows:
        _seed_scale(doctors, patients, days, audit_rows)
    from amrutam.auth.service import AuthService
    from amrutam.dev.demo import DEMO_PASSWORD, seed_demo
    from amrutam.doctors.service import DoctorDirectory
    from amrutam.infra.cache import Cache
    from amrutam.infra.db import Database, create_engine
    from amrutam.infra.redis_client import create_redis
    from amrutam.scheduling.service import Scheduling

    async def load(settings: Settings) -> None:
        db, redis = Database(create_engine(settings, "amrutam-cli")), create_redis(settings)
        cache = Cache(redis)
        try:
            accounts = await seed_demo(
                db,
                AuthService(settings),
                DoctorDirectory(db, cache),
                Scheduling(db, cache, redis, settings.slot_lock_ttl_ms),
            )
        finally:
            await db.dispose()
            await redis.aclose()
        click.echo(f"demo accounts (password for each: {DEMO_PASSWORD}):")
        for account in accounts:
            click.echo(f"  {account.role.value:8} {account.email}")

    _run(load)


def _seed_scale(doctors: int, patients: int, days: int, audit_rows: int) -> None:
    import asyncpg

    from amrutam.audit.partitions import MONTHLY, maintain
    from amrutam.auth.passwords import Passwords
    from amrutam.dev.scale import SCALE_PASSWORD, seed_scale

    settings = get_settings()
    password_hash = Passwords(settings).hash_sync(SCALE_PASSWORD)
    total = doctors + patients + doctors * days * 8 + audit_rows

    async def run(settings: Settings) -> dict[str, int]:
        conn = await asyncpg.connect(_admin_connection_url())
        try:
            if audit_rows:  # the year of history the audit rows spread over
                await maintain(conn, premake=14, now=MONTHLY.shift(_this_month(), -12))
            with click.progressbar(length=total, label="seeding at scale") as bar:
                return await seed_scale(
                    conn,
                    password_hash,
                    doctors,
                    patients,
                    days,
                    audit_rows=audit_rows,
                    progress=lambda _label, n: bar.update(n),
                )
        finally:
            await conn.close()

    added = _run(run)
    click.echo(f"added {added}; scale accounts' password: {SCALE_PASSWORD}")


def _this_month() -> datetime:
    from amrutam.audit.partitions import MONTHLY

    return MONTHLY.floor(datetime.now(UTC))


def _admin_connection_url() -> str:
    from amrutam.infra.db import libpq_dsn

    return libpq_dsn(get_settings().database_admin_url)


@main.group()
def partitions() -> None:
    """The audit trail's time partitions."""


@partitions.command("maintain")
@click.option("--interval", type=click.Choice(["monthly", "weekly", "daily"]), default="monthly")
@click.option("--premake", type=click.IntRange(0, 120), default=3, show_default=True)
@click.option("--keep", type=click.IntRange(1, 10_000), default=None, help="intervals kept")
@click.option("--action", type=click.Choice(["detach", "drop"]), default="detach")
def partitions_maintain(interval: str, premake: int, keep: int | None, action: str) -> None:
    """Create partitions ahead, move default-partition rows, apply retention."""
    import asyncpg
    import orjson

    from amrutam.audit.partitions import INTERVALS, maintain

    async def run(settings: Settings) -> dict[str, object]:
        conn = await asyncpg.connect(_admin_connection_url())
        try:
            report = await maintain(
                conn, interval=INTERVALS[interval], premake=premake, keep=keep, action=action
            )
            return report.as_dict()
        finally:
            await conn.close()

    click.echo(orjson.dumps(_run(run), option=orjson.OPT_INDENT_2).decode())


@partitions.command("status")
def partitions_status() -> None:
    """Horizon, partition count and rows waiting in the default partition."""
    import asyncpg
    import orjson

    from amrutam.audit.partitions import status

    async def run(settings: Settings) -> dict[str, object]:
        conn = await asyncpg.connect(_admin_connection_url())
        try:
            return await status(conn)
        finally:
            await conn.close()

    click.echo(orjson.dumps(_run(run), option=orjson.OPT_INDENT_2).decode())


@main.group()
def audit() -> None:
    """The tamper-evident audit trail."""


def _trail(settings: Settings) -> tuple[Database, AuditTrail]:
    from amrutam.audit.service import AuditTrail
    from amrutam.infra.db import Database, create_engine

    db = Database(create_engine(settings, "amrutam-cli"))
    return db, AuditTrail(db, settings.audit_signing_key.get_secret_value().encode())


@audit.command("seal")
def audit_seal() -> None:
    """Seal every closed hour of the trail that is not sealed yet."""

    async def run(settings: Settings) -> int:
        db, trail = _trail(settings)
        try:
            return int(await trail.seal())
        finally:
            await db.dispose()

    click.echo(f"{_run(run)} hour(s) sealed")


@audit.command("verify")
@click.option("--from", "start", type=click.DateTime(), default=None, help="UTC")
@click.option("--to", "end", type=click.DateTime(), default=None, help="UTC")
def audit_verify(start: datetime | None, end: datetime | None) -> None:
    """Recompute row hashes and seals; exit 1 if anything was tampered with."""
    import orjson

    async def run(settings: Settings) -> dict[str, object]:
        db, trail = _trail(settings)
        try:
            verdict = await trail.verify(
                None,
                start.replace(tzinfo=UTC) if start else None,
                end.replace(tzinfo=UTC) if end else None,
            )
            return verdict.as_dict()
        finally:
            await db.dispose()

    result = _run(run)
    click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if not result["ok"]:
        sys.exit(1)


@main.group()
def tasks() -> None:
    """Background tasks that failed for good (the dead-letter store)."""


async def _app_connection() -> Any:
    import asyncpg

    from amrutam.infra.db import libpq_dsn

    return await asyncpg.connect(libpq_dsn(get_settings().database_url))


@tasks.command("dead")
def tasks_dead() -> None:
    """List tasks that exhausted their retries and were not requeued."""
    from amrutam.infra import deadletters

    async def run(settings: Settings) -> list[dict[str, Any]]:
        conn = await _app_connection()
        try:
            return await deadletters.pending(conn)
        finally:
            await conn.close()

    rows = _run(run)
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
    from celery import Celery

    from amrutam.infra import deadletters

    if not ids and not everything:
        raise click.UsageError("name the dead tasks to retry, or pass --all")

    async def run(settings: Settings) -> list[dict[str, Any]]:
        conn = await _app_connection()
        try:
            async with conn.transaction():
                taken = await deadletters.take_for_retry(conn, list(ids) if ids else None)
                for row in taken:
                    if row["task_name"].endswith("deliver_notification") and row["args"]:
                        await conn.execute(
                            "UPDATE notifications SET status = 'pending' WHERE id = $1 "
                            "AND status = 'failed'",
                            uuid.UUID(row["args"][0]),
                        )
                return taken
        finally:
            await conn.close()

    taken = _run(run)
    broker = Celery("amrutam-cli", broker=get_settings().redis_url)
    for row in taken:
        broker.send_task(row["task_name"], args=row["args"], queue=row["queue"])
    click.echo(f"{len(taken)} task(s) requeued")


@main.group()
def backup() -> None:
    """pgBackRest backups of the database (AMRUTAM_BACKUP_CONFIG, AMRUTAM_BACKUP_STANZA)."""


def _repo() -> PgBackRest:
    from amrutam.backups.pgbackrest import PgBackRest

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


def _backup_step(step: Callable[[PgBackRest], None], done: str) -> None:
    from amrutam.backups.pgbackrest import BackupError

    try:
        step(_repo())
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(done)


@backup.command("stanza-create")
def backup_stanza_create() -> None:
    """Initialise the repository for this database (safe to repeat)."""
    _backup_step(lambda r: r.stanza_create(), "stanza ready")


@backup.command("check")
def backup_check() -> None:
    """Check the configuration and that WAL reaches the archive."""
    _backup_step(lambda r: r.check(), "archiving works")


@backup.command("full")
def backup_full() -> None:
    """Take a full backup."""
    _backup_step(lambda r: r.backup("full"), "full backup taken")


@backup.command("diff")
def backup_diff() -> None:
    """Take a differential backup (changes since the last full)."""
    _backup_step(lambda r: r.backup("diff"), "differential backup taken")


@backup.command("incr")
def backup_incr() -> None:
    """Take an incremental backup (changes since the last backup of any type)."""
    _backup_step(lambda r: r.backup("incr"), "incremental backup taken")


async def _last_archived(settings: Settings) -> datetime | None:
    import asyncpg

    from amrutam.backups.status import archiver

    try:
        conn = await asyncpg.connect(_admin_connection_url(), timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return (await archiver(conn)).last_archived
    finally:
        await conn.close()


def _window() -> tuple[list[Backup], Window | None]:
    from amrutam.backups import status
    from amrutam.backups.pgbackrest import BackupError

    try:
        found = status.backups(_repo().info())
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    return found, status.window(found, _run(_last_archived))


@backup.command("info")
def backup_info() -> None:
    """The backups in the repository and the recovery window, in plain words."""
    from amrutam.backups import status

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
    from amrutam.backups.pgbackrest import BackupError
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


@main.group()
def dev() -> None:
    """The local stack: PostgreSQL and Redis under .local/, and the processes."""


def _stack(backups: bool = False) -> LocalStack:
    from amrutam.dev.stack import LocalStack

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


if __name__ == "__main__":
    main()
