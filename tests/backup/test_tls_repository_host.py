"""The cluster arrangement, on one machine: a repository host takes the backups from a
database host over pgBackRest's TLS server protocol (two configurations, two servers,
mutual certificates), and the database host pushes WAL and restores through it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from amrutam_operator.repository import info

from amrutam.backups.config import render
from amrutam.backups.pgbackrest import PgBackRest
from amrutam.dev.servers import PostgresServer, free_port
from amrutam.infra.migrate import upgrade
from amrutam.infra.system import as_postgres_user, chown_to_postgres, port_in_use
from tests.backup.conftest import CLIENT_CN, STANZA, Archived, certificates


def folders(root: Path, *names: str) -> dict[str, str]:
    made = {}
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        chown_to_postgres(root / name)
        made[f"{name}_path"] = str(root / name)
    chown_to_postgres(root)
    return made


def tls_server(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        as_postgres_user(["pgbackrest", f"--config={config}", "server"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def arrangement(workdir: Path) -> Iterator[tuple[Archived, PgBackRest]]:
    root = workdir / "backup-tls"
    root.mkdir()
    certs = certificates(root / "certs")
    server = PostgresServer(root / "pg", free_port(), settings={"fsync": "off"})
    server.init()
    common = {
        **certs,
        "stanza": STANZA,
        "client_cn": CLIENT_CN,
        "db_tls_port": free_port(),
        "repo_tls_port": free_port(),
        "pg_path": str(server.datadir),
        "pg_port": server.port,
        "pg_socket": str(server.datadir),
        "pg_user": "postgres",
    }
    db_conf, repo_conf = root / "db-host.conf", root / "repo-host.conf"
    repository = folders(root / "repository", "repo", "log", "lock")
    db_conf.write_text(
        render(
            "pgbackrest-tls-db-host.conf",
            **common,
            **folders(root / "db", "log", "lock", "spool"),
            repo_host="localhost",
            repo_path=repository["repo_path"],
            db_listen="127.0.0.1",
        )
    )
    repo_conf.write_text(
        render(
            "pgbackrest-tls-repo-host.conf",
            **common,
            **repository,
            window_days=7,
            repo_listen="127.0.0.1",
            db_host="localhost",
        )
    )
    servers = [tls_server(db_conf), tls_server(repo_conf)]
    deadline = time.monotonic() + 20
    while not (port_in_use(common["db_tls_port"]) and port_in_use(common["repo_tls_port"])):
        assert time.monotonic() < deadline, "the pgBackRest TLS servers did not start"
        time.sleep(0.1)

    server.include(
        "archiving.conf",
        "wal_level = replica\narchive_mode = on\n"
        f"archive_command = 'pgbackrest --config={db_conf} --stanza={STANZA} archive-push %p'\n",
    )
    server.start()
    server.create_database("amrutam")
    upgrade(server.url("amrutam"))
    yield Archived(server, PgBackRest(db_conf, STANZA), root), PgBackRest(repo_conf, STANZA)
    server.stop("immediate")
    for process in servers:
        process.terminate()
        process.wait(10)


def test_repository_host_backs_up_the_database_host_over_tls(
    arrangement: tuple[Archived, PgBackRest], workdir: Path
) -> None:
    db, repository = arrangement
    repository.stanza_create()
    repository.check()  # from the repository host: reaches PostgreSQL through the TLS server
    db.sql("CREATE TABLE charts (id int)")
    db.sql("INSERT INTO charts SELECT generate_series(1, 25)")
    repository.backup("full")
    db.sql("INSERT INTO charts SELECT generate_series(26, 30)")
    db.repo.check()  # from the database host: WAL reaches the repository host over TLS

    assert [b["type"] for b in repository.info()["backup"]] == ["full"]
    assert [b["type"] for b in db.repo.info()["backup"]] == ["full"]  # seen from either side
    # The operator, given the database host's configuration and a client certificate,
    # reads the repository through the repository host with that certificate (N1: it
    # passes it as a repository host's only when there is one).
    certs = workdir / "backup-tls" / "certs"
    client = {"tls.crt": "client.crt", "tls.key": "client.key", "ca.crt": "ca.crt"}
    tls = {key: (certs / name).read_text() for key, name in client.items()}
    found = info(db.repo.config.read_text(), STANZA, {}, tls, [])
    assert [b["type"] for b in found["backup"]] == ["full"], found["status"]

    into = db.scratch / "restored"
    into.mkdir(mode=0o700)
    chown_to_postgres(into)
    db.repo.restore(into, None)  # the database host restores, fetching over TLS
    copy = db.restored(into)
    try:
        assert copy.psql("SELECT count(*) FROM charts", database="amrutam").strip() == "30"
    finally:
        copy.stop("immediate")
