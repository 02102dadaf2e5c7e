"""A PostgreSQL that archives its WAL to a real pgBackRest repository."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3

from amrutam.backups.config import archiving_settings, prepare_local
from amrutam.backups.pgbackrest import PgBackRest
from amrutam.dev.servers import PostgresServer, free_port
from amrutam.infra.migrate import upgrade
from amrutam.infra.system import as_postgres_user, chown_to_postgres, port_in_use
from tests.servers import ROOT, STARTUP_S

STANZA = "amrutam"


@dataclass
class Archived:
    server: PostgresServer
    repo: PgBackRest
    root: Path

    @property
    def scratch(self) -> Path:
        """A folder the postgres user may write in (pytest's tmp_path is root's alone)."""
        path = self.root / "scratch"
        path.mkdir(exist_ok=True)
        path.chmod(0o777)
        return path

    def dsn(self, database: str = "amrutam") -> str:
        return self.server.url(database, driver="postgresql")

    def sql(self, statement: str) -> str:
        return self.server.psql(statement, database="amrutam").strip()

    def restored(self, datadir: Path) -> PostgresServer:
        """Start a restored data directory on its own port, archiving off, and wait
        until recovery has finished and it has been promoted."""
        copy = PostgresServer(datadir, free_port(), settings={"archive_mode": "off"})
        copy.start()
        deadline = time.monotonic() + 60
        while copy.psql("SELECT pg_is_in_recovery()", database="amrutam").strip() != "f":
            assert time.monotonic() < deadline, "the restored copy never left recovery"
            time.sleep(0.2)
        return copy


def archived_server(root: Path, env: dict[str, str] | None = None, **repo: Any) -> Archived:
    server = PostgresServer(root / "pg", free_port(), settings={"fsync": "off"})
    config = prepare_local(root / "pgbackrest", STANZA, server.datadir, server.port, **repo)
    server.include("archiving.conf", archiving_settings(config, STANZA))
    server.start()
    server.create_database("amrutam")
    upgrade(server.url("amrutam"))
    repo = PgBackRest(config, STANZA, env)
    repo.stanza_create()
    repo.check()
    return Archived(server, repo, root)


@pytest.fixture(scope="module")
def archived(workdir: Path, request: pytest.FixtureRequest) -> Iterator[Archived]:
    root = workdir / f"backup-{request.module.__name__.rsplit('.', 1)[-1]}"
    root.mkdir()
    found = archived_server(root)
    yield found
    found.server.stop("immediate")


def faked(days: int, repo: PgBackRest, *args: str) -> subprocess.CompletedProcess[str]:
    """A pgbackrest command run as if ``days`` days had passed (libfaketime)."""
    cmd = [
        "faketime",
        "-f",
        f"+{days}d",
        "pgbackrest",
        f"--config={repo.config}",
        f"--stanza={repo.stanza}",
        *args,
    ]
    done = subprocess.run(as_postgres_user(cmd), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def self_signed(key: Path, cert: Path, subject: str) -> None:
    """A P-256 key and a self-signed certificate for it, valid two days."""
    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        subject,
        "-keyout",
        str(key),
        "-out",
        str(cert),
    )


CLIENT_CN = "pgbackrest-client"


def certificates(folder: Path, host: str = "localhost") -> dict[str, str]:
    """A CA, a server certificate for the host, a client certificate, and one for both
    uses (the chart's arrangement: one secret serves the servers and the clients)."""
    folder.mkdir()
    ca_key, ca = folder / "ca.key", folder / "ca.crt"
    self_signed(ca_key, ca, "/CN=amrutam-test-ca")
    for name, subject, extension in [
        ("server", f"/CN={host}", f"subjectAltName=DNS:{host}"),
        ("client", f"/CN={CLIENT_CN}", "extendedKeyUsage=clientAuth"),
        (
            "both",
            f"/CN={CLIENT_CN}",
            f"subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth,clientAuth",
        ),
    ]:
        key, csr, crt = (folder / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        openssl(
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            str(key),
            "-out",
            str(csr),
        )
        extfile = folder / f"{name}.ext"
        extfile.write_text(extension + "\n")
        openssl(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(extfile),
            "-out",
            str(crt),
        )
    for path in [folder, *folder.iterdir()]:
        chown_to_postgres(path)
    return {
        "ca_file": str(ca),
        "server_cert": str(folder / "server.crt"),
        "server_key": str(folder / "server.key"),
        "client_cert": str(folder / "client.crt"),
        "client_key": str(folder / "client.key"),
        "both_cert": str(folder / "both.crt"),
        "both_key": str(folder / "both.key"),
    }


BUCKET = "amrutam-backups"
KEYS = {"PGBACKREST_REPO1_S3_KEY": "test-key", "PGBACKREST_REPO1_S3_KEY_SECRET": "test-secret"}


@contextmanager
def s3_server(
    folder: Path,
    address: str = "127.0.0.1",
    tls: tuple[Path, Path] | None = None,
    port: int | None = None,
) -> Iterator[int]:
    """moto's S3 over HTTPS on the port given or a free one of the address, with the
    certificate and key given (else a self-signed one); yields the port."""
    port = port or free_port()
    cert, key = tls or (folder / "s3.crt", folder / "s3.key")
    if tls is None:
        self_signed(key, cert, "/CN=127.0.0.1")
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.backup.s3_server", str(port), str(cert), str(key), address],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Reached by a name of its own (a certificate's), path-style: moto would take
        # that name's first label for a bucket.
        env={**os.environ, "S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true"} if tls else None,
    )
    deadline = time.monotonic() + STARTUP_S
    while not port_in_use(port, "127.0.0.1" if address == "0.0.0.0" else address):
        assert server.poll() is None, "the S3 server exited"
        assert time.monotonic() < deadline, "the S3 server did not start"
        time.sleep(0.1)
    try:
        yield port
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def s3_port(workdir: Path) -> Iterator[int]:
    with s3_server(workdir) as port:
        yield port


def s3(port: int, host: str = "127.0.0.1") -> object:
    urllib3.disable_warnings()
    return boto3.client(
        "s3",
        endpoint_url=f"https://{host}:{port}",
        aws_access_key_id=KEYS["PGBACKREST_REPO1_S3_KEY"],
        aws_secret_access_key=KEYS["PGBACKREST_REPO1_S3_KEY_SECRET"],
        region_name="us-east-1",
        verify=False,  # moto's certificate is self-signed
    )
