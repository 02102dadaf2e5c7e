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
    """Create an administrator (the only way to get one). When MFA is required, also set
    up its second factor and print the enrolment URI: the admin adds it to an
    authenticator app, logs in and confirms it with a code (POST /v1/auth/mfa/confirm)."""
    from pydantic import ValidationError

    from amrutam.audit.log import Actor
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

    async def create(settings: Settings) -> str | None:
        db = Database(create_engine(settings, "amrutam-cli"))
        try:
            accounts = Accounts(db, settings)
            user = await accounts.create_user(
                email=account.email,
                password=account.password,
                full_name=account.full_name,
                role=Role.admin,
            )
            if not settings.mfa_required:
                return None
            himself = Actor(user.id, Role.admin.value, None, None)
            return (await accounts.factors.setup(himself, account.email)).otpauth_uri
        finally:
            await db.dispose()

    try:
        uri = run(create)
    except Conflict as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(f"admin {account.email} created")
    if uri is not None:
        click.echo(f"second factor to enrol (add it to an authenticator app, then confirm):\n{uri}")


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
