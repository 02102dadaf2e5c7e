"""The S3 repository, against a local S3-compatible server (moto, over HTTPS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import urllib3

from amrutam.dev.servers import free_port
from amrutam.infra.system import port_in_use
from tests.backup.conftest import Archived, archived_server, self_signed
from tests.servers import ROOT

BUCKET = "amrutam-backups"
KEYS = {"PGBACKREST_REPO1_S3_KEY": "test-key", "PGBACKREST_REPO1_S3_KEY_SECRET": "test-secret"}


@pytest.fixture(scope="module")
def s3_port(workdir: Path) -> Iterator[int]:
    port, cert, key = free_port(), workdir / "s3.crt", workdir / "s3.key"
    self_signed(key, cert, "/CN=127.0.0.1")
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.backup.s3_server", str(port), str(cert), str(key)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_in_use(port):
        assert server.poll() is None, "the S3 server exited"
        assert time.monotonic() < deadline, "the S3 server did not start"
        time.sleep(0.1)
    yield port
    server.terminate()
    server.wait(10)


def s3(port: int) -> object:
    urllib3.disable_warnings()
    return boto3.client(
        "s3",
        endpoint_url=f"https://127.0.0.1:{port}",
        aws_access_key_id=KEYS["PGBACKREST_REPO1_S3_KEY"],
        aws_secret_access_key=KEYS["PGBACKREST_REPO1_S3_KEY_SECRET"],
        region_name="us-east-1",
        verify=False,  # moto's certificate is self-signed
    )


@pytest.fixture(scope="module")
def on_s3(workdir: Path, s3_port: int) -> Iterator[Archived]:
    s3(s3_port).create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    # PostgreSQL's archive_command inherits the keys from the server's environment.
    saved = {k: os.environ.get(k) for k in KEYS}
    os.environ.update(KEYS)
    root = workdir / "backup-s3"
    root.mkdir()
    try:
        found = archived_server(
            root,
            env=KEYS,
            repo_type="s3",
            repo_path="/amrutam",
            s3_bucket=BUCKET,
            s3_endpoint="127.0.0.1",
            s3_port=s3_port,
            s3_region="us-east-1",
            s3_uri_style="path",
            s3_verify_tls="n",
        )
        yield found
        found.server.stop("immediate")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_backup_to_s3_and_restore_from_it(on_s3: Archived, s3_port: int) -> None:
    on_s3.sql("CREATE TABLE visits (id int)")
    on_s3.sql("INSERT INTO visits SELECT generate_series(1, 50)")
    on_s3.repo.backup("full")
    on_s3.sql("INSERT INTO visits SELECT generate_series(51, 60)")
    on_s3.repo.check()

    listing = s3(s3_port).list_objects_v2(Bucket=BUCKET, Prefix="amrutam/")  # type: ignore[attr-defined]
    keys = [o["Key"] for o in listing.get("Contents", [])]
    assert any(k.startswith("amrutam/backup/amrutam/") for k in keys)
    assert any(k.startswith("amrutam/archive/amrutam/") for k in keys)

    into = on_s3.scratch / "from-s3"
    into.mkdir(mode=0o700)
    subprocess.run(["chown", "postgres:postgres", str(into)], check=True)
    on_s3.repo.restore(into, None)
    copy = on_s3.restored(into)
    try:
        assert copy.psql("SELECT count(*) FROM visits", database="amrutam").strip() == "60"
    finally:
        copy.stop("immediate")
