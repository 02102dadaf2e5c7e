"""``amrutam create-admin`` and ``amrutam app-role-password``."""

from __future__ import annotations

import click

from amrutam.cli.common import admin_connection, run
from amrutam.settings import Settings


@click.command("create-admin")
@click.option("--email", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--full-name", default="Administrator", show_default=True)
def create_admin(email: str, password: str, full_name: str) -> None:
    """Create an administrator (the only way to get one)."""
    from pydantic import ValidationError

    from amrutam.auth.models import Role
    from amrutam.auth.schemas import NewAccount
    from amrutam.auth.service import Accounts
    from amrutam.errors import Conflict
    from amrutam.infra.db import Database, create_engine

    try:
        account = NewAccount(email=email, password=password, full_name=full_name)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise click.BadParameter(error["msg"], param_hint=f"--{error['loc'][0]}") from exc

    async def create(settings: Settings) -> None:
        db = Database(create_engine(settings, "amrutam-cli"))
        try:
            await Accounts(db, settings).create_user(
                email=account.email,
                password=account.password,
                full_name=account.full_name,
                role=Role.admin,
            )
        finally:
            await db.dispose()

    try:
        run(create)
    except Conflict as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(f"admin {account.email} created")


@click.command("app-role-password")
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
    from amrutam.infra.db import APP_ROLE, set_role_password

    async def set_password(_: Settings) -> None:
        async with admin_connection() as conn:
            await set_role_password(conn, APP_ROLE, password)

    run(set_password)
    click.echo(f"{APP_ROLE} password set")


COMMANDS = (create_admin, app_role_password)
