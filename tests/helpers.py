"""Helpers the tests share: settings for API processes, accounts, problem checks.

Plain functions and constants, imported by test modules (never from a conftest).
"""

from __future__ import annotations

import ipaddress
import os
import random
import time
import uuid
from typing import Any

import httpx
import pyotp

from amrutam.dev.servers import free_port

METRICS_PORT = free_port()
KUBE_PORT = free_port()
LIVENESS_PORT = free_port()
# The operator tests' settings, here because the root conftest imports this file before anything
# imports the operator (its timers' tick and its settings are read at import).
os.environ.update(
    AMRUTAM_OPERATOR_KUBE_API_URL=f"http://127.0.0.1:{KUBE_PORT}",
    AMRUTAM_OPERATOR_STANDALONE="true",
    AMRUTAM_OPERATOR_TICK_S="0.2",
    AMRUTAM_OPERATOR_RETRY_BASE_S="0.5",
    AMRUTAM_OPERATOR_RETRY_MAX_S="2",
    AMRUTAM_OPERATOR_DRAIN_TIMEOUT_S="60",
    AMRUTAM_OPERATOR_BACKUP_STATUS_INTERVAL_S="0.5",
    AMRUTAM_OPERATOR_METRICS_PORT=str(METRICS_PORT),
)

TEST_JWT_SECRET = "test-secret-for-the-test-suite-only-0123456789abcdef"
PASSWORD = "correct horse battery"
# Where the tests' main API server says clients reach it (AMRUTAM_PUBLIC_BASE_URL).
PUBLIC_BASE_URL = "https://api.amrutam.test"


def as_app_role(admin_url: str) -> str:
    """The same database, as the application's role (what the API connects as)."""
    return admin_url.replace("://postgres@", "://amrutam_app@")


def api_env(database_url: str, redis_url: str, **overrides: str) -> dict[str, str]:
    """Settings for an API process; ``database_url`` is the administrator's."""
    env = {
        "AMRUTAM_ENVIRONMENT": "test",
        "AMRUTAM_DATABASE_URL": as_app_role(database_url),
        "AMRUTAM_DATABASE_ADMIN_URL": database_url,
        "AMRUTAM_REDIS_URL": redis_url,
        "AMRUTAM_JWT_SECRET": TEST_JWT_SECRET,
        "AMRUTAM_ARGON2_TIME_COST": "1",
        "AMRUTAM_ARGON2_MEMORY_KIB": "8192",
        "AMRUTAM_TRUSTED_PROXIES": "1",
        "AMRUTAM_RATE_LIMIT_ANONYMOUS": "100000/minute",
        "AMRUTAM_RATE_LIMIT_USER": "100000/minute",
        "AMRUTAM_RATE_LIMIT_LOGIN_IP": "100000/minute",
        "AMRUTAM_RATE_LIMIT_LOGIN_ACCOUNT": "10/minute",
        # Suites book many slots as one patient; the caps have their own test server.
        "AMRUTAM_MAX_OPEN_BOOKINGS": "100000",
        "AMRUTAM_MAX_OPEN_BOOKINGS_PER_DOCTOR": "100000",
        "AMRUTAM_HOLD_COOLDOWN_S": "0",
        "AMRUTAM_MAX_WAITLIST_ENTRIES": "100",
        "AMRUTAM_MAX_BODY_BYTES": "65536",
        "AMRUTAM_LOG_LEVEL": "WARNING",
    }
    env.update({f"AMRUTAM_{key.upper()}": value for key, value in overrides.items()})
    return env


SHORT_HOLD_S = 2  # how long holds last on the ``short_hold_api`` server


def random_ip() -> str:
    return str(ipaddress.IPv4Address(random.randint(0x0B000001, 0xDEFFFFFE)))


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


async def register(
    http: httpx.AsyncClient, role: str = "patient", email: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {
        "email": email or unique_email(role),
        "password": PASSWORD,
        "full_name": f"Test {role.title()}",
        "role": role,
        **extra,
    }
    response = await http.post("/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= body.keys()
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def totp_code(secret: str, steps_ahead: int = 0) -> str:
    """The TOTP code of ``secret`` for the current 30 s step plus ``steps_ahead`` (the
    server accepts one step either side, and each step once per account)."""
    totp = pyotp.TOTP(secret)
    return totp.at(time.time() + steps_ahead * totp.interval)


async def enrol(http: httpx.AsyncClient, tokens: dict[str, Any]) -> tuple[str, list[str]]:
    """Set up and confirm a second factor (spends the current step); secret and codes."""
    setup = await http.post("/v1/auth/mfa/setup", headers=bearer(tokens))
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    confirm = await http.post(
        "/v1/auth/mfa/confirm", headers=bearer(tokens), json={"code": totp_code(secret)}
    )
    assert confirm.status_code == 200, confirm.text
    return secret, confirm.json()["recovery_codes"]


async def password_step(http: httpx.AsyncClient, email: str) -> str:
    login = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["mfa_required"] is True
    assert "access_token" not in body
    assert "refresh_token" not in body
    return str(body["mfa_token"])


async def verify_code(http: httpx.AsyncClient, mfa_token: str, code: str) -> httpx.Response:
    return await http.post("/v1/auth/mfa/verify", json={"mfa_token": mfa_token, "code": code})
