"""``amrutam migrate`` and ``amrutam seed``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import click

from amrutam.cli.common import admin_connection, run
from amrutam.settings import Settings, get_settings


@click.command()
@click.option(
    "--wait",
    "wait_s",
    type=click.IntRange(0),
    default=0,
    help="seconds to wait for the database to accept connections first",
)
def migrate(wait_s: int) -> None:
    """Bring the database schema up to date."""
    from amrutam.infra.migrate import upgrade

    if wait_s:
        run(lambda _: _await_database(wait_s))
    upgrade(get_settings().database_admin_url)
    click.echo("database is at the latest migration")


async def _await_database(wait_s: int) -> None:
    """Until the owner role connects: a database started beside this Job (the chart's
    own, on its first install) is still being created, named or started."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            async with admin_connection(connect_timeout=5):
                return
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            if loop.time() >= deadline:
                raise click.ClickException(f"the database refused for {wait_s} s: {exc!r}") from exc
            click.echo(f"waiting for the database: {type(exc).__name__}", err=True)
            await asyncio.sleep(2)


@click.command()
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
    if get_settings().environment == "production":
        raise click.ClickException("demo and scale data are refused in production")
    if doctors or patients or audit_rows:
        _seed_scale(doctors, patients, days, audit_rows)
    from amrutam.dev.demo import DEMO_PASSWORD, seed_demo

    accounts = run(seed_demo)
    click.echo(f"demo accounts (password for each: {DEMO_PASSWORD}):")
    for account in accounts:
        click.echo(f"  {account.role.value:8} {account.email}")


def _seed_scale(doctors: int, patients: int, days: int, audit_rows: int) -> None:
    from amrutam.audit.partitions import MONTHLY, maintain
    from amrutam.auth.mfa import SecretBox
    from amrutam.auth.passwords import Passwords
    from amrutam.dev.scale import SCALE_PASSWORD, seed_scale

    settings = get_settings()
    password_hash = Passwords(settings).hash_sync(SCALE_PASSWORD)
    box = SecretBox(settings.mfa_encryption_key.get_secret_value().encode())
    total = doctors + patients + doctors * days * 8 + audit_rows

    async def load(_: Settings) -> dict[str, int]:
        async with admin_connection() as conn:
            if audit_rows:  # the year of history the audit rows spread over
                a_year_ago = MONTHLY.shift(MONTHLY.floor(datetime.now(UTC)), -12)
                await maintain(conn, premake=14, now=a_year_ago)
            with click.progressbar(length=total, label="seeding at scale") as bar:
                return await seed_scale(
                    conn,
                    password_hash,
                    box,
                    doctors,
                    patients,
                    days,
                    audit_rows=audit_rows,
                    progress=lambda _label, n: bar.update(n),
                )

    added = run(load)
    click.echo(f"added {added}; scale accounts' password: {SCALE_PASSWORD}")


COMMANDS = (migrate, seed)
