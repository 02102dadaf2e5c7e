"""Settings safety and the admin command line."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from pydantic import ValidationError

from amrutam.settings import Settings
from tests.helpers import as_app_role, assert_problem, bearer, unique_email
from tests.servers import ApiServer


def test_production_refuses_the_development_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMRUTAM_ENVIRONMENT", "production")
    monkeypatch.delenv("AMRUTAM_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="AMRUTAM_JWT_SECRET"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("AMRUTAM_JWT_SECRET", "short")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("AMRUTAM_JWT_SECRET", "x" * 48)
    with pytest.raises(ValidationError, match="AMRUTAM_AUDIT_SIGNING_KEY"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("AMRUTAM_AUDIT_SIGNING_KEY", "y" * 48)
    with pytest.raises(ValidationError, match="AMRUTAM_MFA_ENCRYPTION_KEY"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("AMRUTAM_MFA_ENCRYPTION_KEY", "z" * 48)
    assert Settings(_env_file=None).environment == "production"  # type: ignore[call-arg]


def _amrutam(
    database_url: str, *args: str, stdin: str | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **{f"AMRUTAM_{name.upper()}": value for name, value in settings.items()},
        "AMRUTAM_DATABASE_URL": as_app_role(database_url),
        "AMRUTAM_DATABASE_ADMIN_URL": database_url,
        "AMRUTAM_ARGON2_TIME_COST": "1",
        "AMRUTAM_ARGON2_MEMORY_KIB": "8192",
    }
    return subprocess.run(
        [sys.executable, "-m", "amrutam.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_create_admin_prompts_for_the_password_and_the_admin_can_log_in(
    database_url: str, api: ApiServer
) -> None:
    email = unique_email("admin")
    password = "admin-password-42"
    made = _amrutam(
        database_url, "create-admin", "--email", email, stdin=f"{password}\n{password}\n"
    )
    assert made.returncode == 0, made.stderr
    again = _amrutam(database_url, "create-admin", "--email", email, "--password", password)
    assert again.returncode != 0
    assert "already exists" in again.stderr
    short = _amrutam(database_url, "create-admin", "--email", unique_email(), "--password", "short")
    assert short.returncode != 0

    async with httpx.AsyncClient(base_url=api.url, headers={"X-Forwarded-For": "10.3.3.3"}) as http:
        login = await http.post("/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200
        assert login.json()["user"]["role"] == "admin"
        me = await http.get("/v1/auth/me", headers=bearer(login.json()))
        assert me.json()["role"] == "admin"
        refused = await http.post(
            "/v1/auth/register",
            json={"email": unique_email(), "password": password, "full_name": "A", "role": "admin"},
        )
        assert_problem(refused, 422)


def test_seed_is_idempotent(database_url: str) -> None:
    first = _amrutam(database_url, "seed")
    second = _amrutam(database_url, "seed")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "patient@amrutam.example" in second.stdout


def test_demo_data_is_refused_in_production(database_url: str) -> None:
    """F27: the seed would create admin@amrutam.example with a published password."""
    refused = _amrutam(
        database_url,
        "seed",
        environment="production",
        jwt_secret="j" * 48,
        audit_signing_key="a" * 48,
    )
    assert refused.returncode != 0
    assert "production" in refused.stderr


def test_migrate_is_idempotent(database_url: str) -> None:
    result = _amrutam(database_url, "migrate")
    assert result.returncode == 0, result.stderr


async def test_seed_at_scale_is_idempotent(database_url: str) -> None:
    import asyncpg
    import pyotp

    from amrutam.auth.factors import use_code
    from amrutam.auth.mfa import SecretBox
    from amrutam.dev.scale import admin_email, doctor_email, totp_secret
    from amrutam.settings import DEV_MFA_KEY
    from tests.factories import pg_dsn

    args = ("seed", "--doctors=40", "--patients=60", "--days=2", "--audit-rows=300")
    first = _amrutam(database_url, *args)
    assert first.returncode == 0, first.stderr
    assert "'doctors': 40, 'admins': 20" in first.stdout
    assert "'slots': 640" in first.stdout  # 40 doctors x 2 days x 8 slots
    again = _amrutam(database_url, *args)
    assert again.returncode == 0, again.stderr
    assert "{'doctors': 0, 'admins': 0, 'patients': 0, 'slots': 0, 'audit_rows': 0}" in again.stdout

    # Every seeded doctor and admin has a second factor the load generator can answer.
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        enrolled = await conn.fetchval(
            "SELECT count(*) FROM mfa_factors f JOIN users u ON u.id = f.user_id "
            "WHERE f.enabled_at IS NOT NULL AND (u.email LIKE 'scale-doctor-%' "
            "OR u.email LIKE 'scale-admin-%')"
        )
        assert enrolled == 60
        box = SecretBox(DEV_MFA_KEY.encode())
        for email in (doctor_email(39), admin_email(0)):
            user_id = await conn.fetchval("SELECT id FROM users WHERE email = $1", email)
            async with conn.transaction():
                code = pyotp.TOTP(totp_secret(email)).now()
                assert await use_code(conn, box, user_id, code) == "totp"
    finally:
        await conn.close()


async def test_app_role_password_is_set_safely(database_url: str) -> None:
    import asyncpg

    from tests.factories import pg_dsn

    tricky = 'it\'s a "quoted"; DROP ROLE amrutam_app; --'
    done = _amrutam(database_url, "app-role-password", "--password", tricky)
    assert done.returncode == 0, done.stderr
    conn = await asyncpg.connect(pg_dsn(database_url))
    try:
        verifier = await conn.fetchval(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'amrutam_app'"
        )
        assert verifier.startswith("SCRAM-SHA-256$")  # stored hashed, the role still exists
        await conn.execute("ALTER ROLE amrutam_app PASSWORD NULL")
    finally:
        await conn.close()
