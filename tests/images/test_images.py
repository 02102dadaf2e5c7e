"""The built images, booted as the chart and the operator run them (``make image-test``).

The chart is rendered with its in-cluster PostgreSQL, backups to S3 (a local S3 server
the containers reach at their network's gateway) and the built images. Then its pods
run as containers (``tests/images/pods.py``): the PostgreSQL StatefulSet's pod (the
database with archiving on, pgBackRest's TLS server beside it), Redis, the migration
Job, the API, worker and beat Deployments; a booking goes through the containerised API
and its confirmation through the worker. The operator's backup Job then runs in the
application image against the database's TLS server, its restore Job in the PostgreSQL
image into an empty claim, and PostgreSQL starts on that claim as the chart starts it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from amrutam_operator import manifests, restores
from amrutam_operator.config import settings

from amrutam.dev.demo import DEMO_PASSWORD
from tests.backup.conftest import BUCKET, KEYS, certificates, s3, s3_server
from tests.chart.rendering import named, render, statefulset_pod
from tests.images.pods import Network, Objects, Pod, engine

pytestmark = pytest.mark.images

APP_IMAGE = os.environ.get("APP_IMAGE", "localhost/amrutam:dev")
POSTGRES_IMAGE = os.environ.get("POSTGRES_IMAGE", "localhost/amrutam-postgresql:dev")
REDIS_IMAGE = "docker.io/library/redis:7-bookworm"
TLS, S3_SECRET = "pgbr-tls", "pgbr-s3"
DB_POD = "amrutam-postgresql-0"


def _image(reference: str) -> dict[str, str]:
    repository, tag = reference.rsplit(":", 1)
    return {"repository": repository, "tag": tag}


def values(s3_host: str, **postgresql: Any) -> dict[str, Any]:
    return {
        "image": _image(APP_IMAGE),
        "redis": {"host": "redis"},
        "postgresql": {"enabled": True, "tlsSecret": TLS, "image": _image(POSTGRES_IMAGE)}
        | postgresql,
        "backups": {
            "enabled": True,
            "repo": {
                "type": "s3",
                "path": "/amrutam",
                "s3": {
                    "bucket": BUCKET,
                    "endpoint": s3_host,
                    "region": "us-east-1",
                    "uriStyle": "path",
                    "credentialsSecret": S3_SECRET,
                },
            },
            "tlsSecret": TLS,
        },
    }


@dataclass
class Platform:
    root: Path
    network: Network
    docs: list[dict[str, Any]]
    objects: Objects
    db: Pod
    api: str  # the API's base URL
    s3_env: list[str]  # the S3 provider's port and certificate, as a cluster's S3 differs
    figures: dict[str, float]

    @property
    def schedule(self) -> dict[str, Any]:
        return named(self.docs, "BackupSchedule", "amrutam")

    def sql(self, statement: str, pod: Pod | None = None) -> str:
        return (pod or self.db).exec(
            "postgresql", "psql", "-h", "/var/run/postgresql", "-U", "postgres",
            "-d", "amrutam", "-Atc", statement,
        )  # fmt: skip

    def pod(self, name: str, spec: dict[str, Any]) -> Pod:
        return Pod(name, spec, self.root / name, self.objects, self.network)

    def job(self, name: str, job: dict[str, Any], *extra: str) -> dict[str, Any]:
        pod = self.pod(name, job["spec"]["template"]["spec"])
        try:
            return pod.run(240, *self.s3_env, *extra)
        finally:
            pod.remove()


def wait_until(check: Any, what: str, timeout: float = 90) -> float:
    """Seconds until ``check()`` is true."""
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (httpx.HTTPError, RuntimeError):
            pass
        assert time.monotonic() - start < timeout, f"{what} within {timeout} s"
        time.sleep(0.2)


def deployment(platform_docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return copy.deepcopy(named(platform_docs, "Deployment", name)["spec"]["template"]["spec"])


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    root = workdir / "images"
    root.mkdir()
    network = Network("amrutam-image-test")
    pods: list[Pod] = []
    with s3_server(root, "0.0.0.0") as s3_port, pytest.MonkeyPatch.context() as patch:
        s3(s3_port).create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        certs = certificates(root / "certs", host="amrutam-postgresql")
        docs = render(values(network.gateway))  # where the containers reach S3
        objects = Objects.rendered(docs)
        objects.secrets[TLS] = {
            "tls.crt": Path(certs["both_cert"]).read_text(),
            "tls.key": Path(certs["both_key"]).read_text(),
            "ca.crt": Path(certs["ca_file"]).read_text(),
        }
        objects.secrets[S3_SECRET] = {
            "key": KEYS["PGBACKREST_REPO1_S3_KEY"],
            "secret": KEYS["PGBACKREST_REPO1_S3_KEY_SECRET"],
        }
        objects.claims[f"data-{DB_POD[:-2]}-0"] = root / "claims" / "db"
        # The operator's settings, as the chart's operator Deployment gives them.
        operator = deployment(docs, "amrutam-operator")["containers"][0]
        for item in operator.get("env", []):
            if item["name"].startswith("AMRUTAM_OPERATOR_") and "value" in item:
                patch.setenv(item["name"], item["value"])
        settings.cache_clear()
        s3_env = [
            f"--env=PGBACKREST_REPO1_STORAGE_PORT={s3_port}",
            "--env=PGBACKREST_REPO1_STORAGE_VERIFY_TLS=n",
        ]
        figures: dict[str, float] = {}
        try:
            db = Pod(DB_POD, statefulset_pod(docs, DB_POD[:-2]), root / "db", objects, network)
            pods.append(db)
            for name in ("postgresql", "pgbackrest"):
                db.start(db.container(name), *s3_env)
            platform = Platform(root, network, docs, objects, db, "", s3_env, figures)
            figures["postgresql ready s"] = wait_until(
                lambda: platform.sql("SELECT 1") == "1", "PostgreSQL answers"
            )
            network.serve(db.ip, "amrutam-postgresql")
            redis = platform.pod("redis", {"containers": [{"name": "redis", "image": REDIS_IMAGE}]})
            pods.append(redis)
            redis.start(redis.container("redis"))
            network.serve(redis.ip, "redis")

            # A first install with the chart's PostgreSQL: the Job beside the database.
            migrate = named(docs, "Job", "amrutam-migrate-install")
            done = platform.job("migrate", migrate)["migrate"]
            assert done.ok, done.output
            seed = copy.deepcopy(migrate)
            seed["spec"]["template"]["spec"]["containers"][0]["command"] = ["amrutam", "seed"]
            # (demo data are refused in production: this one run says development)
            done = platform.job("seed", seed, "--env=AMRUTAM_ENVIRONMENT=development")["migrate"]
            assert done.ok, done.output

            api = platform.pod("api", deployment(docs, "amrutam-api"))
            pods.append(api)
            api.start(api.container("api"))
            platform.api = f"http://{api.ip}:8000"
            figures["api ready s"] = wait_until(
                lambda: httpx.get(f"{platform.api}/readyz", timeout=2).status_code == 200,
                "the API container is ready",
            )
            for name in ("worker", "beat"):
                pod = platform.pod(name, deployment(docs, f"amrutam-{name}"))
                pods.append(pod)
                pod.start(pod.container(name))
            figures["worker ready s"] = wait_until(
                lambda: " ready." in pods[-2].logs("worker"), "the worker container is ready"
            )
            yield platform
        finally:
            for pod in pods:
                for container in pod.spec.get("containers", []):
                    if os.environ.get("IMAGE_TEST_LOGS"):
                        print(f"--- {pod.name}/{container['name']}\n{pod.logs(container['name'])}")
                pod.remove()
            network.remove()
            settings.cache_clear()
            print(json.dumps({"start-up": {k: round(v, 1) for k, v in figures.items()}}))


def test_both_images_carry_the_same_pgbackrest() -> None:
    """pgBackRest's protocol refuses a peer of another version: the Jobs (application
    image) and the server beside PostgreSQL (PostgreSQL image) must agree."""
    versions = {
        image: engine("run", "--rm", "--entrypoint=pgbackrest", image, "version")
        for image in (APP_IMAGE, POSTGRES_IMAGE)
    }
    assert set(versions.values()) == {versions[APP_IMAGE]}, versions
    assert versions[APP_IMAGE].startswith("pgBackRest 2.")


# Each package the image installs, and where its source is in this tree.
SOURCES = {
    "amrutam": "amrutam",
    "api": "api",
    "workers": "workers",
    "amrutam_operator": "operator/amrutam_operator",
}


def test_the_image_carries_this_trees_code() -> None:
    """uv keys a local project's cached wheel on pyproject.toml alone: an image built after
    a change to the code alone once shipped the code of an earlier build."""
    script = (
        "import hashlib, importlib, pathlib\n"
        f"for name in {sorted(SOURCES)!r}:\n"
        "    root = pathlib.Path(importlib.import_module(name).__file__).parent\n"
        "    for path in sorted(root.rglob('*.py')):\n"
        "        print(name, path.relative_to(root), hashlib.sha256(path.read_bytes()).hexdigest())"
    )
    inside = engine("run", "--rm", "--entrypoint=python", APP_IMAGE, "-c", script).splitlines()
    tree = Path(__file__).resolve().parents[2]
    here = [
        f"{name} {path.relative_to(tree / source)} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        for name, source in sorted(SOURCES.items())
        for path in sorted((tree / source).rglob("*.py"))
        if "__pycache__" not in path.parts
    ]
    assert sorted(inside) == sorted(here)


def test_application_image_runs_as_the_chart_asks() -> None:
    user = engine("run", "--rm", "--read-only", "--entrypoint=id", APP_IMAGE, "-u")
    assert user == "10001"
    # Nothing but /tmp (an emptyDir) is written at run time: the root stays read-only.
    written = engine(
        "run", "--rm", "--read-only", "--read-only-tmpfs=false", "--tmpfs=/tmp",
        "--entrypoint=sh", APP_IMAGE, "-c", "touch /opt/venv/x 2>&1 || echo refused",
    )  # fmt: skip
    assert written.endswith("refused")


def test_a_booking_through_the_containerised_api_is_confirmed_by_the_worker(
    platform: Platform,
) -> None:
    with httpx.Client(base_url=platform.api, timeout=10) as client:
        login = client.post(
            "/v1/auth/login",
            json={"email": "patient@amrutam.example", "password": DEMO_PASSWORD},
        )
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        doctors = client.get("/v1/doctors").json()["items"]
        slots = [
            slot
            for doctor in doctors
            for slot in client.get(f"/v1/doctors/{doctor['id']}/slots").json()["items"]
        ]
        assert slots, "the demo data has open slots"
        booked = client.post(
            "/v1/appointments/book",
            json={"slot_id": slots[0]["id"], "reason": "image test"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert booked.status_code == 201, booked.text
        appointment = booked.json()["id"]
    # beat relays the outbox, the worker delivers the confirmation.
    wait_until(
        lambda: (
            platform.sql(
                f"SELECT count(*) FROM notifications WHERE appointment_id = '{appointment}' "
                "AND status = 'sent'"
            )
            != "0"
        ),
        "the worker container sent the booking's confirmation",
    )


def test_backup_job_then_restore_job_and_postgresql_on_the_restored_claim(
    platform: Platform,
) -> None:
    platform.sql("CREATE TABLE image_rows (id int)")
    platform.sql("INSERT INTO image_rows SELECT generate_series(1, 50)")
    job = {"spec": manifests.backup_job_spec("amrutam", platform.schedule["spec"], "full")}
    done = platform.job("backup-full", job)["pgbackrest"]
    assert done.ok, done.output
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == APP_IMAGE

    # Rows after the backup come back from the WAL the database container archived.
    platform.sql("INSERT INTO image_rows SELECT generate_series(51, 57)")
    segment = platform.sql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_until(
        lambda: platform.sql("SELECT last_archived_wal FROM pg_stat_archiver") >= segment,
        "the database container archived the segment to S3",
    )
    expected = platform.sql("SELECT count(*), sum(id) FROM image_rows")

    claim = "restored"
    platform.objects.claims[claim] = platform.root / "claims" / claim
    spec = {"target": {"latest": True}, "into": {"persistentVolumeClaim": {"name": claim}}}
    restore = manifests.restore_job("restore-latest", 1, spec, platform.schedule)
    assert restore["spec"]["template"]["spec"]["containers"][0]["image"] == POSTGRES_IMAGE
    done = platform.job("restore-latest", restore)["restore"]
    assert done.ok, done.output
    reached, seconds = restores.reached(done.message)
    assert reached is not None
    assert seconds is not None

    # PostgreSQL on the restored claim, as the chart starts it there (existingClaim: a
    # StatefulSet named for the claim, N4).
    docs = render(values("-", existingClaim=claim) | {"backups": {"enabled": False}})
    database = f"{DB_POD[:-2].removesuffix('-postgresql')}-pg-{claim}"
    copy_ = platform.pod("restored-postgresql", statefulset_pod(docs, database))
    try:
        copy_.start(copy_.container("postgresql"))
        wait_until(
            lambda: platform.sql("SELECT pg_is_in_recovery()", copy_) == "f",
            "PostgreSQL starts on the restored claim",
        )
        assert platform.sql("SELECT count(*), sum(id) FROM image_rows", copy_) == expected
    finally:
        copy_.remove()
