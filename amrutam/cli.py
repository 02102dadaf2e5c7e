"""The ``amrutam`` admin command."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from amrutam.settings import Settings, get_settings

if TYPE_CHECKING:
    from amrutam.localstack import LocalStack

T = TypeVar("T")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _run(make: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make(get_settings()))


@click.group()
def main() -> None:
    """Amrutam administration."""


@main.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from amrutam.migrate import upgrade

    upgrade(get_settings().database_url)
    click.echo("database is at the latest migration")


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
    from amrutam.db import Database, create_engine
    from amrutam.errors import Conflict

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
def seed() -> None:
    """Load demo data (idempotent)."""
    from amrutam.auth.service import AuthService
    from amrutam.cache import Cache
    from amrutam.db import Database, create_engine
    from amrutam.doctors.service import DoctorDirectory
    from amrutam.redisconn import create_redis
    from amrutam.scheduling.service import Scheduling
    from amrutam.seed import DEMO_PASSWORD, seed_demo

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


@main.group()
def dev() -> None:
    """The local stack: PostgreSQL and Redis under .local/, and the processes."""


def _stack() -> LocalStack:
    from amrutam.localstack import LocalStack

    return LocalStack.from_settings(get_settings(), PROJECT_ROOT / ".local")


@dev.command("up")
def dev_up() -> None:
    """Start the local PostgreSQL and Redis."""
    from amrutam.devservices import ServiceError

    try:
        _stack().up()
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    settings = get_settings()
    click.echo(f"PostgreSQL: {settings.database_url}\nRedis:      {settings.redis_url}")


@dev.command("down")
def dev_down() -> None:
    """Stop the local PostgreSQL and Redis (their data is kept)."""
    _stack().down()


@dev.command("run")
@click.option("--procfile", default=str(PROJECT_ROOT / "Procfile"), show_default=True)
def dev_run(procfile: str) -> None:
    """Start the services, migrate, seed, and run the API, worker and beat until Ctrl-C."""
    from amrutam.devservices import ServiceError, port_in_use

    settings = get_settings()
    stack = _stack()
    if port_in_use(settings.port, settings.host):
        raise click.ClickException(
            f"port {settings.port} is already in use: stop what holds it or set AMRUTAM_PORT"
        )
    try:
        stack.up()
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        ctx = click.get_current_context()
        ctx.invoke(migrate)
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
