"""What a BackupSchedule's repository and database say: ``pgbackrest info`` run here
with the schedule's repository, credentials and client certificate, and PostgreSQL's
``pg_stat_archiver``."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

from amrutam.backups import status as repo_status
from amrutam.backups.pgbackrest import PgBackRest
from amrutam.infra.db import libpq_dsn
from amrutam.infra.system import chown_to_postgres
from amrutam_operator import kube
from amrutam_operator.manifests import repo_options, s3_ca


async def read(namespace: str, spec: Mapping[str, Any]) -> list[repo_status.Backup]:
    """Run `pgbackrest info` with the schedule's repository and credentials."""
    config = (await kube.configmap_data(namespace, spec["configMapRef"]["name"])).get(
        "pgbackrest.conf"
    )
    if not config:
        raise kube.MissingReference("configmap has no pgbackrest.conf")
    env: dict[str, str] = {}
    s3 = spec["repo"].get("s3")
    # web-id: the operator's own identity (its service account's, in its environment).
    if spec["repo"]["type"] == "s3" and s3 and s3.get("keyType", "shared") == "shared":
        creds = await kube.secret_data(namespace, s3["credentialsSecretRef"]["name"])
        env = {
            "PGBACKREST_REPO1_S3_KEY": creds.get("key", ""),
            "PGBACKREST_REPO1_S3_KEY_SECRET": creds.get("secret", ""),
        }
    tls = (
        await kube.secret_data(namespace, spec["tlsSecretRef"]["name"])
        if spec.get("tlsSecretRef")
        else None
    )
    ca = None
    if ref := s3_ca(spec):
        ca = (await kube.secret_data(namespace, ref["name"])).get(ref.get("key", "ca.crt"))
        if not ca:
            raise kube.MissingReference(f"secret {ref['name']} has no {ref.get('key', 'ca.crt')}")
    repo = repo_options(spec, ca_file=None)  # info() writes the CA where it runs
    found = await asyncio.to_thread(info, config, spec.get("stanza", "amrutam"), env, tls, repo, ca)
    return repo_status.backups(found)


def info(
    config: str,
    stanza: str,
    env: dict[str, str],
    tls: dict[str, str] | None,
    repo: list[str],
    ca: str | None = None,
) -> dict[str, Any]:
    """`pgbackrest info` with the repository options given, the client certificate and
    the object store's CA (``ca``: PEM) written to a private folder for the call."""
    with tempfile.TemporaryDirectory(prefix="amrutam-pgbackrest-") as folder:
        root = Path(folder)
        root.chmod(0o755)  # pgbackrest may run as another user than the operator
        (root / "pgbackrest.conf").write_text(config)
        (root / "pgbackrest.conf").chmod(0o644)
        options = ["--log-level-file=off", f"--lock-path={root}", *repo]
        if ca is not None:
            (root / "ca.crt").write_text(ca)
            (root / "ca.crt").chmod(0o644)
            options.append(f"--repo1-storage-ca-file={root / 'ca.crt'}")
        # The client certificate is a repository host's only when there is one: with an
        # object store (the chart's S3) `info` reads the repository itself, and pgBackRest
        # refuses repo1-host-* options without a TLS repository host.
        remote = "repo1-host=" in config or any(o.startswith("--repo1-host=") for o in repo)
        for key, option in (("tls.crt", "cert"), ("tls.key", "key"), ("ca.crt", "ca")):
            if tls is not None and remote:
                # pgBackRest refuses a key that its group or others may read; it runs as
                # the postgres user where the operator runs as root (tests, a host).
                (root / key).touch(mode=0o600)
                (root / key).write_text(tls.get(key, ""))
                chown_to_postgres(root / key)
                options.append(f"--repo1-host-{option}-file={root / key}")
        # A hung object store must not hold a thread for ever.
        return PgBackRest(root / "pgbackrest.conf", stanza, env).info(*options, timeout=120)


async def archiver(namespace: str, spec: Mapping[str, Any]) -> repo_status.Archiver | None:
    ref = spec.get("databaseSecretRef")
    if not ref:
        return None
    dsn = await kube.secret_value(namespace, {"key": "dsn", **ref})
    conn = await asyncpg.connect(libpq_dsn(dsn), timeout=10)
    try:
        return await repo_status.archiver(conn)
    finally:
        await conn.close()
