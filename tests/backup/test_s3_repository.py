"""The S3 repository, against a local S3-compatible server (moto, over HTTPS)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backup.conftest import BUCKET, KEYS, Archived, archived_server, s3


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
