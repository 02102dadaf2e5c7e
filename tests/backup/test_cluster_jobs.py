"""The operator's backup, restore and drill Jobs, run as a cluster would run them.

The chart is rendered with its in-cluster PostgreSQL and an S3 repository (a local S3
server). PostgreSQL runs with its StatefulSet's arguments and environment (it archives
WAL to S3 with the rendered pgbackrest.conf), and the pgBackRest TLS server beside it
from its container's command, ConfigMap and certificate secret. Then the Jobs the
operator builds from the chart's BackupSchedule run from their manifests
(``tests/pods.py``): same argv, same environment, a folder standing in for each volume.
Restores are checked by starting PostgreSQL on the restored folder and reading rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from amrutam_operator import manifests, restores

from amrutam.audit import seals
from amrutam.audit.actions import Action
from amrutam.audit.log import SYSTEM, record
from amrutam.backups import status
from amrutam.dev.servers import PostgresServer, free_port
from amrutam.infra.migrate import upgrade
from amrutam.infra.system import chown_to_postgres, port_in_use
from amrutam.settings import DEV_AUDIT_KEY
from tests.backup.conftest import BUCKET, KEYS, certificates, s3
from tests.chart.rendering import named, render, statefulset_pod
from tests.pods import Finished, Pod, Sources

TLS, S3_SECRET, APP_SECRET = "pgbr-tls", "pgbr-s3", "amrutam-env"
VALUES: dict[str, Any] = {
    "postgresql": {"enabled": True, "tlsSecret": TLS},
    "backups": {
        "enabled": True,
        "repo": {
            "type": "s3",
            "path": "/amrutam",
            "s3": {
                "bucket": BUCKET,
                "endpoint": "127.0.0.1",
                "region": "us-east-1",
                "uriStyle": "path",
                "credentialsSecret": S3_SECRET,
            },
        },
        "tlsSecret": TLS,
        "drill": {"enabled": True},
    },
}


@dataclass
class Cluster:
    root: Path
    docs: list[dict[str, Any]]
    sources: Sources
    db: PostgresServer
    env: dict[str, str]  # the S3 provider's port and certificate, as a cluster's S3 differs
    ports: dict[str, int]

    @property
    def schedule(self) -> dict[str, Any]:
        return named(self.docs, "BackupSchedule", "amrutam")

    def run(self, job: dict[str, Any], name: str, **claims: Path) -> dict[str, Finished]:
        sources = copy.copy(self.sources)
        sources.claims = {**self.sources.claims, **claims}
        pod = Pod(job["spec"]["template"]["spec"], self.root / "pods" / name, sources)
        return pod.run(timeout=200, extra=self.env)

    def backup(self, kind: str, name: str) -> dict[str, Finished]:
        job = {"spec": manifests.backup_job_spec("amrutam", self.schedule["spec"], kind)}
        return self.run(job, name)

    def ensure_backup(self) -> None:
        """A test run alone still finds a backup to restore."""
        if not self.repository():
            done = self.backup("full", "first-full")["pgbackrest"]
            assert done.ok, done.output

    def sql(self, statement: str) -> str:
        return self.db.psql(statement, database="amrutam")

    def repository(self) -> list[status.Backup]:
        """What the repository holds, read the way the operator reads it."""
        from amrutam_operator.repository import info

        config = self.sources.configmaps["amrutam-pgbackrest"]["pgbackrest.conf"]
        spec = self.schedule["spec"]
        env = {**KEYS, **self.env}
        # With the client certificate the chart's values name, as the operator passes it
        # (N1: it passed it as a repository host's, and pgBackRest refused every call).
        tls = self.sources.secrets[spec["tlsSecretRef"]["name"]]
        found = info(
            self.sources.rewrite("amrutam-pgbackrest", config),
            "amrutam",
            env,
            tls,
            manifests.repo_options(spec),
        )
        return status.backups(found)


def services(ports: dict[str, int], datadir: Path, socket: Path) -> Any:
    """Cluster DNS and Service ports, on one host: the database's pgBackRest server is
    ``localhost`` on a port of its own, PostgreSQL on its test port."""

    def rewrite(_configmap: str, text: str) -> str:
        text = text.replace("pg1-host=amrutam-postgresql", "pg1-host=localhost")
        text = text.replace("tls-server-address=*", "tls-server-address=127.0.0.1")
        text = text.replace("tls-server-port=8432", f"tls-server-port={ports['db']}")
        text = text.replace("pg1-host-port=8432", f"pg1-host-port={ports['db']}")
        text = text.replace("pg1-port=5432", f"pg1-port={ports['pg']}")
        # Paths on the database's pod, named by the other pods' configurations.
        text = text.replace("pg1-path=/var/lib/postgresql/data/pgdata", f"pg1-path={datadir}")
        return text.replace("pg1-socket-path=/var/run/postgresql", f"pg1-socket-path={socket}")

    return rewrite


def wait_for(port: int, pod: Pod) -> None:
    deadline = time.monotonic() + 20
    while not port_in_use(port):
        assert time.monotonic() < deadline, (
            f"{pod.root.name} did not start: {pod.log('pgbackrest')}"
        )
        time.sleep(0.1)


async def _audit_rows(url: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        for _ in range(count):
            async with conn.transaction():
                await record(
                    conn, SYSTEM, Action.AUDIT_PARTITION_ROWS_MOVED, detail={"probe": True}
                )
        # Seal the closed hours, as beat does (rows of this hour stay covered by hashes).
        await seals.seal(conn, DEV_AUDIT_KEY.encode())
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def cluster(workdir: Path, s3_port: int) -> Iterator[Cluster]:
    root = workdir / "cluster-jobs"
    root.mkdir()
    s3(s3_port).create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    certs = certificates(root / "certs")
    tls = {
        "tls.crt": Path(certs["both_cert"]).read_text(),
        "tls.key": Path(certs["both_key"]).read_text(),
        "ca.crt": Path(certs["ca_file"]).read_text(),
    }
    docs = render(VALUES)
    ports = {"db": free_port(), "pg": free_port()}
    claims = {"data-amrutam-postgresql-0": root / "claims" / "db"}
    sources = Sources(
        configmaps={
            d["metadata"]["name"]: d["data"]
            for d in docs
            if d["kind"] == "ConfigMap" and "pgbackrest" in d["metadata"]["name"]
        },
        secrets={
            TLS: tls,
            S3_SECRET: {
                "key": KEYS["PGBACKREST_REPO1_S3_KEY"],
                "secret": KEYS["PGBACKREST_REPO1_S3_KEY_SECRET"],
            },
            APP_SECRET: {"AMRUTAM_AUDIT_SIGNING_KEY": DEV_AUDIT_KEY, "POSTGRES_PASSWORD": "-"},
        },
        claims=claims,
        rewrite=services(
            ports,
            claims["data-amrutam-postgresql-0"] / "pgdata",
            root / "db-host" / "volumes" / "run",
        ),
    )
    # The S3 provider: a local server on its own port, with a self-signed certificate.
    env = {
        "PGBACKREST_REPO1_STORAGE_PORT": str(s3_port),
        "PGBACKREST_REPO1_STORAGE_VERIFY_TLS": "n",
    }
    db_pod = Pod(statefulset_pod(docs, "amrutam-postgresql"), root / "db-host", sources)
    server = db_pod.start(db_pod.container("pgbackrest"), env)
    wait_for(ports["db"], db_pod)

    # PostgreSQL as the StatefulSet runs it: its arguments, its volumes.
    postgresql = db_pod.container("postgresql")
    args = db_pod.argv({**postgresql, "command": []})
    chart = dict(arg.split("=", 1) for arg in args if arg != "-c")
    socket = db_pod.local(postgresql, "/var/run/postgresql")
    db = PostgresServer(
        claims["data-amrutam-postgresql-0"] / "pgdata",
        ports["pg"],
        settings={"fsync": "off", "unix_socket_directories": socket},
    )
    db.include("chart.conf", "".join(f"{k} = '{v}'\n" for k, v in chart.items()))
    # archive_command runs with the server's environment: the container's S3 keys.
    container_env = {k: v for k, v in db_pod.environ(postgresql, env).items() if "REPO1" in k}
    saved = {k: os.environ.get(k) for k in container_env}
    os.environ.update(container_env)
    db.start()
    db.create_database("amrutam")
    upgrade(db.url("amrutam"))
    asyncio.run(_audit_rows(db.url("amrutam", driver="postgresql"), 20))
    found = Cluster(root, docs, sources, db, env, ports)
    yield found
    db.stop("immediate")
    server.terminate()
    server.wait(10)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def restored(datadir: Path) -> PostgresServer:
    """PostgreSQL started on what a Job restored, as the chart would start it there."""
    copy_ = PostgresServer(datadir, free_port(), settings={"archive_mode": "off"})
    copy_.start()
    return copy_


def restore_job(cluster: Cluster, name: str, target: dict[str, Any]) -> dict[str, Any]:
    spec = {"target": target, "into": {"persistentVolumeClaim": {"name": name, "storage": "1Gi"}}}
    return manifests.restore_job(name, 1, spec, cluster.schedule)


def test_backup_jobs_run_with_the_charts_configuration(cluster: Cluster) -> None:
    cluster.sql("CREATE TABLE visits (id int)")
    cluster.sql("INSERT INTO visits SELECT generate_series(1, 40)")
    for kind in ("full", "differential", "incremental"):
        done = cluster.backup(kind, f"backup-{kind}")["pgbackrest"]
        assert done.ok, done.output + (cluster.db.datadir / "server.log").read_text()[-3000:]
        cluster.sql("INSERT INTO visits SELECT generate_series(1, 5)")
    kinds = [b.kind for b in cluster.repository()]
    assert kinds == ["full", "differential", "incremental"]


def test_a_backup_during_another_waits_for_it_instead_of_failing(cluster: Cluster) -> None:
    cluster.ensure_backup()
    before = len(cluster.repository())
    results: dict[str, Finished] = {}

    def run(kind: str, name: str) -> None:
        results[name] = cluster.backup(kind, name)["pgbackrest"]

    # A full backup and, a moment later, a backup-now incremental of the same stanza.
    full = threading.Thread(target=run, args=("full", "overlap-full"))
    full.start()
    time.sleep(1.0)
    run("incremental", "overlap-incr")
    full.join()
    assert results["overlap-full"].ok, results["overlap-full"].output
    assert results["overlap-incr"].ok, results["overlap-incr"].output
    assert "unable to acquire lock" in results["overlap-incr"].output  # it did meet the lock
    assert len(cluster.repository()) == before + 2  # both ran, one after the other


@contextlib.contextmanager
def _holding(lock: Path, within_s: float = 30.0) -> Iterator[None]:
    """Hold a pgBackRest lock file as a running backup does. The remote of the backup
    before may still hold it while it exits (a CI run found it held), and pgBackRest
    removes the file when it lets go, so each try makes the file anew and checks that
    the file it locked is still the one at the path. Made here, the file must be the
    postgres user's, or pgBackRest would be locked out of its own lock file."""
    deadline = time.monotonic() + within_s
    while True:
        lock.touch()
        chown_to_postgres(lock)
        with lock.open() as held:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(held.fileno()).st_ino == os.stat(lock).st_ino:
                    yield
                    return
            except (BlockingIOError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.1)


def test_a_backup_that_cannot_get_the_lock_stands_down_with_a_message(cluster: Cluster) -> None:
    """Held past half its deadline, the stanza's lock makes a backup skip (exit 0, a
    termination message the operator posts as an Event), never a failed Job."""
    cluster.ensure_backup()
    spec = {**cluster.schedule["spec"], "jobDeadlineSeconds": 60}  # waits 30 s at most
    job = {"spec": manifests.backup_job_spec("amrutam", spec, "incremental")}
    # The lock a running backup holds on the database host: the remote the TLS server
    # starts takes it in pgBackRest's default lock path (/tmp/pgbackrest, the pod's /tmp).
    lock = Path("/tmp/pgbackrest/amrutam-backup.lock")
    before = len(cluster.repository())
    with _holding(lock):
        done = cluster.run(job, "stand-down")["pgbackrest"]
    assert done.ok, done.output
    assert done.message.startswith("skipped: another backup of the stanza held its lock")
    assert len(cluster.repository()) == before


def test_restore_job_to_a_time_boots_with_exactly_the_rows_of_that_time(cluster: Cluster) -> None:
    cluster.ensure_backup()
    cluster.sql("CREATE TABLE charts (id int)")
    cluster.sql("INSERT INTO charts SELECT generate_series(1, 30)")
    time.sleep(1.1)
    moment = datetime.now(UTC)
    time.sleep(1.1)
    cluster.sql("INSERT INTO charts SELECT generate_series(31, 45)")
    cluster.sql("SELECT pg_switch_wal()")  # the segment reaches the repository
    claim = cluster.root / "claims" / "restore-to-time"
    job = restore_job(cluster, "restore-to-time", {"time": status.iso(moment)})

    done = cluster.run(job, "restore-to-time", **{"restore-to-time": claim})["restore"]
    assert done.ok, done.output
    reached, seconds = restores.reached(done.message)
    assert reached is not None
    assert seconds is not None
    assert status.iso(moment - timedelta(seconds=3)) <= reached <= status.iso(moment)
    assert (claim / "pgdata" / "PG_VERSION").exists()
    assert (claim / "pgdata").stat().st_uid == (cluster.db.datadir).stat().st_uid  # postgres
    copy_ = restored(claim / "pgdata")
    try:
        assert copy_.psql("SELECT count(*) FROM charts", database="amrutam") == "30"
    finally:
        copy_.stop()


def test_restore_job_to_latest_and_a_retry_over_a_partial_attempt(cluster: Cluster) -> None:
    cluster.ensure_backup()
    cluster.sql("CREATE TABLE IF NOT EXISTS notes (id int)")
    cluster.sql("INSERT INTO notes SELECT generate_series(1, 12)")
    cluster.sql("SELECT pg_switch_wal()")
    claim = cluster.root / "claims" / "restore-latest"
    # What a failed first attempt left behind: files that would make pgBackRest refuse.
    (claim / "pgdata" / "base").mkdir(parents=True)
    (claim / "pgdata" / "PG_VERSION").write_text("15\n")
    job = restore_job(cluster, "restore-latest", {"latest": True})
    done = cluster.run(job, "restore-latest", **{"restore-latest": claim})["restore"]
    assert done.ok, done.output
    copy_ = restored(claim / "pgdata")
    try:
        assert copy_.psql("SELECT count(*) FROM notes", database="amrutam") == "12"
    finally:
        copy_.stop()


def test_a_target_outside_the_window_fails_the_restore_rather_than_returning_wrong_data(
    cluster: Cluster,
) -> None:
    # The operator refuses this before any Job (tests/operator); were such a Job run,
    # pgBackRest itself must not pretend: recovery cannot reach a time after the archive.
    cluster.ensure_backup()
    later = status.iso(datetime.now(UTC) + timedelta(hours=1))
    job = restore_job(cluster, "restore-future", {"time": later})
    claim = cluster.root / "claims" / "restore-future"
    done = cluster.run(job, "restore-future", **{"restore-future": claim})["restore"]
    assert not done.ok
    assert "recovery ended before configured recovery target was reached" in done.output, (
        done.output
    )
    assert done.message == ""  # no restoredTo reported for a restore that did not finish


def test_drill_job_restores_boots_and_probes_the_latest_backup(cluster: Cluster) -> None:
    cluster.ensure_backup()
    job = {"spec": manifests.drill_job_spec("amrutam", cluster.schedule["spec"])}
    pod = job["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "data")["ephemeral"]  # scratch
    done = cluster.run(job, "drill")
    assert done["restore"].ok, done["restore"].output + done["probe"].output
    assert done["probe"].ok, done["probe"].output
    probe = json.loads(done["probe"].message)
    assert probe["ok"] is True
    assert probe["seals"]["checked"] >= 20  # the audit rows, verified under the key
    users = cluster.sql("SELECT count(*) FROM users")
    assert probe["rows"]["users"] == int(users)
    report = json.loads(done["restore"].message)
    assert report["recoverySeconds"] >= 0
