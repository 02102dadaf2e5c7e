"""The chart's secrets Job, run as its manifest says, against the emulated API.

A GitOps tool renders the chart on every sync; nothing random is rendered, and this Job
keeps what the Secret holds, so keys survive every sync and upgrade.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.chart.rendering import named, render, secrets_job_env
from tests.operator.conftest import NAMESPACE, Cluster

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def run_job(values: dict[str, Any]) -> str:
    """The rendered Job's command with its environment (the given-values Secret included)."""
    docs = render(values, installed=False)
    (container,) = named(docs, "Job", "amrutam-secrets")["spec"]["template"]["spec"]["containers"]
    env = {**os.environ, **secrets_job_env(docs), "POD_NAMESPACE": NAMESPACE}
    command = [sys.executable if part == "python" else part for part in container["command"]]
    # In a thread: this loop serves the emulated API the Job talks to.
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def stored(cluster: Cluster) -> dict[str, str]:
    secret = cluster.get("v1", "secrets", "amrutam-env")
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


async def test_generated_keys_survive_every_sync_and_given_values_win(cluster: Cluster) -> None:
    assert "created" in await run_job({})
    first = stored(cluster)
    assert len(first["AMRUTAM_JWT_SECRET"]) == 40

    # A sync or an upgrade renders the same and the Job changes nothing.
    assert "up to date" in await run_job({})
    assert stored(cluster) == first

    # A value given later wins (rotation), and only what depends on it changes.
    password = "p@ss:w/rd?#"  # quoted in the URL, not taken as its delimiters
    await run_job(
        {"secrets": {"jwtSecret": "rotated-" + "x" * 40, "databaseAppPassword": password}}
    )
    after = stored(cluster)
    assert after["AMRUTAM_JWT_SECRET"] == "rotated-" + "x" * 40
    assert after["AMRUTAM_AUDIT_SIGNING_KEY"] == first["AMRUTAM_AUDIT_SIGNING_KEY"]
    url = make_url(after["AMRUTAM_DATABASE_URL"])
    assert (url.username, url.password, url.host) == ("amrutam_app", password, "postgresql")


async def test_outside_passwords_given_once_are_kept_when_a_later_sync_leaves_them_out(
    cluster: Cluster,
) -> None:
    """N11: the managed database's administrator and Redis passwords cannot be generated;
    an upgrade or sync whose values leave them out blanked them in the Secret."""
    given = {"secrets": {"databaseAdminPassword": "adm:in/pw", "redisPassword": "re@dis"}}
    await run_job(given)
    await run_job({})  # e.g. values kept in a secret store, not in the chart's values
    after = stored(cluster)
    admin = make_url(after["AMRUTAM_DATABASE_ADMIN_URL"])
    assert (admin.username, admin.password) == ("amrutam_admin", "adm:in/pw")
    assert make_url(after["AMRUTAM_REDIS_URL"]).password == "re@dis"
    # A password given later still wins.
    await run_job({"secrets": {"redisPassword": "rotated"}})
    assert make_url(stored(cluster)["AMRUTAM_REDIS_URL"]).password == "rotated"
