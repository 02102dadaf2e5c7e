"""The chaos run: ``make chaos`` (10 minutes) or ``python -m loadtests.chaos --duration 150``.

Starts its own platform on this machine: a PostgreSQL primary with a synchronous streaming
standby, Redis (persistent), the API (two processes under Sanic's manager), a Celery
worker and beat, all reaching the database through one multi-host URL with
``target_session_attrs=read-write``. Runs the Locust population at the sustained load of
docs/performance.md while a fault schedule plays:

1. SIGKILL of one API worker process;
2. a graceful restart of the API, every process replaced (new ones first);
3. Redis stopped for 10 s, then started with its data;
4. PostgreSQL restarted (fast shutdown, start);
5. failover: the primary killed and the standby promoted;
6. SIGKILL of the Celery worker in the middle of deliveries (started again, like a pod).

Then waits for the workers to catch up and checks the database (``chaos_invariants``).
Writes ``chaos.json`` and ``chaos.png`` (``chaos_report``; every request is in
``.local/chaos/requests.jsonl``, the processes' logs beside it) and exits 1 when fewer than
99.95 % of requests got their correct answer or an invariant is broken.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx
import psutil

from amrutam.dev.servers import PostgresServer, RedisServer, free_port
from amrutam.infra.db import libpq_dsn
from loadtests.chaos_invariants import check, wait_drained
from loadtests.chaos_report import Fault, figures, load_requests, plot

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".local" / "chaos"
TARGET = 0.9995
DATABASE = "amrutam"
# Small enough to seed in a minute; the load, not the data size, is what faults meet.
DOCTORS, PATIENTS, DAYS = 1_000, 3_000, 7
FAULTS = (
    "kill-api-worker",
    "restart-api",
    "redis-outage",
    "postgres-restart",
    "failover",
    "kill-worker",
)


class Platform:
    """The processes of the run, and the faults done to them."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.primary = PostgresServer(
            work / "primary", free_port(), settings={"max_connections": "200"}
        )
        self.standby: PostgresServer | None = None
        self.redis = RedisServer(work / "redis", free_port(), persistent=True)
        self.port, self.inspector_port = free_port(), free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, role: str) -> str:
        servers = [self.primary, *([self.standby] if self.standby else [])]
        hosts = "&".join(f"host=127.0.0.1:{s.port}" for s in servers)
        return f"postgresql+asyncpg://{role}@/{DATABASE}?{hosts}&target_session_attrs=read-write"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AMRUTAM_DATABASE_URL": self.url("amrutam_app"),
            "AMRUTAM_DATABASE_ADMIN_URL": self.url("postgres"),
            "AMRUTAM_REDIS_URL": self.redis.url(),
            "AMRUTAM_PORT": str(self.port),
            "AMRUTAM_WORKERS": "2",
            "AMRUTAM_LOG_LEVEL": "WARNING",
            "AMRUTAM_RATE_LIMIT_ANONYMOUS": "1000000/minute",
            "AMRUTAM_RATE_LIMIT_LOGIN_IP": "1000000/minute",
            "AMRUTAM_RATE_LIMIT_MFA_IP": "1000000/minute",
            # A killed worker's tasks come back after this (and Celery's ~100 s sweep).
            "AMRUTAM_BROKER_VISIBILITY_TIMEOUT_S": "30",
            "SANIC_INSPECTOR": "true",
            "SANIC_INSPECTOR_PORT": str(self.inspector_port),
        }

    def start_stores(self) -> None:
        self.primary.start()
        self.primary.create_database(DATABASE)
        self.redis.start()

    def prepare(self) -> None:
        """Migrate and seed on the primary alone, then add the synchronous standby."""
        for args in (
            ["migrate"],
            ["partitions", "maintain"],
            ["seed"],
            ["seed", f"--doctors={DOCTORS}", f"--patients={PATIENTS}", f"--days={DAYS}"],
        ):
            subprocess.run(
                [sys.executable, "-m", "amrutam.cli", *args], cwd=ROOT, env=self.env, check=True
            )
        self.standby = self.primary.start_standby(self.work / "standby", free_port())

    def spawn(self, name: str, args: list[str]) -> None:
        log = (self.work / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_api(self) -> None:
        self.spawn("api", [sys.executable, "-m", "api"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the API did not become ready; see " + str(self.work / "api.log"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_worker(self) -> None:
        celery = [sys.executable, "-m", "celery", "-A", "workers.app"]
        self.spawn(
            "worker",
            [
                *celery,
                "worker",
                "--loglevel=WARNING",
                "--queues=default,notifications,maintenance",
                "--concurrency=2",
                "--without-gossip",
                "--without-mingle",
            ],
        )

    def start_beat(self) -> None:
        self.spawn(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.app",
                "beat",
                "--loglevel=WARNING",
                f"--schedule={self.work / 'celerybeat-schedule'}",
            ],
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.redis.stop()
        for server in (self.primary, self.standby):
            if server is not None:
                server.stop("immediate")

    # The faults: each returns a line saying what it did.

    def kill_api_worker(self) -> str:
        """SIGKILL to one of the processes serving the port (not the manager or inspector)."""
        manager = psutil.Process(self.procs["api"].pid)
        servers = [
            child
            for child in manager.children()
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == self.port
                for c in child.net_connections("tcp")
            )
        ]
        servers[0].kill()
        return f"SIGKILL to API worker process {servers[0].pid} of {len(servers)}"

    def restart_api(self) -> str:
        response = httpx.post(
            f"http://127.0.0.1:{self.inspector_port}/reload",
            json={"zero_downtime": True},
            timeout=10,
        )
        response.raise_for_status()
        time.sleep(8)  # the new processes start, then the old ones drain and exit
        return "zero-downtime reload: new worker processes first, then the old ones drained"

    def redis_outage(self) -> str:
        self.redis.stop()
        time.sleep(10)
        self.redis.start()
        return "Redis shut down (saving) for 10 s, then started with its data"

    def postgres_restart(self) -> str:
        self.primary.stop("fast")
        self.primary.start()
        return "primary: pg_ctl stop -m fast, then start"

    def failover(self) -> str:
        assert self.standby is not None
        self.primary.stop("immediate")
        self.standby.promote()
        return "primary killed (immediate shutdown), standby promoted"

    def kill_worker(self) -> str:
        proc = self.procs["worker"]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(2)
        self.start_worker()
        return "SIGKILL to the Celery worker and its pool; a new one started 2 s later"


def _locust(platform: Platform, out: Path, users: int, duration_s: int) -> subprocess.Popen[bytes]:
    env = {
        **platform.env,
        "CHAOS_REQUESTS": str(platform.work / "requests.jsonl"),
        "SEED_DOCTORS": str(DOCTORS),
        "SEED_PATIENTS": str(PATIENTS),
        "LOAD_PACE": "0.1",
        "SLO_RESULTS": str(platform.work / "slo"),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(Path(__file__).with_name("chaos_locustfile.py")),
            "--headless",
            "-u",
            str(users),
            "-r",
            "6",
            "-t",
            f"{duration_s}s",
            "--host",
            platform.base_url,
            "--only-summary",
            "--stop-timeout",
            "10",
        ],
        cwd=ROOT,
        env=env,
        stdout=(platform.work / "locust.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def _schedule(
    platform: Platform, names: tuple[str, ...], duration_s: int
) -> list[tuple[float, str, Callable[[], str]]]:
    """Each fault at its share of the run, after a calm first tenth (users arriving)."""
    actions = {name: getattr(platform, name.replace("-", "_")) for name in names}
    step = duration_s * 0.85 / len(names)
    return [(duration_s * 0.1 + i * step, name, actions[name]) for i, name in enumerate(names)]


@click.command()
@click.option(
    "--duration", type=click.IntRange(60), default=600, show_default=True, help="seconds of load"
)
@click.option("--users", type=int, default=60, show_default=True, help="Locust users at pace 0.1")
@click.option("--faults", default=",".join(FAULTS), show_default=True, help="which, in order")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=ROOT / "loadtests" / "results" / "chaos",
    show_default=True,
)
def main(duration: int, users: int, faults: str, out: Path) -> None:
    names = tuple(name.strip() for name in faults.split(",") if name.strip())
    unknown = set(names) - set(FAULTS)
    if not names:
        raise click.BadParameter(f"name at least one of: {', '.join(FAULTS)}")
    if unknown:
        raise click.BadParameter(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    WORK.chmod(0o755)
    out.mkdir(parents=True, exist_ok=True)
    platform = Platform(WORK)
    # Stopped from outside (a CI timeout, kill): still stop everything it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        result = _run(platform, names, duration, users, out)
    finally:
        platform.stop()
    sys.exit(0 if result["passed"] else 1)


def _run(
    platform: Platform, names: tuple[str, ...], duration: int, users: int, out: Path
) -> dict[str, Any]:
    platform.start_stores()
    platform.prepare()
    platform.start_api()
    platform.start_worker()
    platform.start_beat()
    since = datetime.now(UTC)
    t0 = time.time()
    locust = _locust(platform, out, users, duration)
    done: list[Fault] = []
    for at, name, action in _schedule(platform, names, duration):
        time.sleep(max(0.0, at - (time.time() - t0)))
        started = time.time() - t0
        click.echo(f"[{started:6.1f} s] fault: {name}")
        detail = action()
        done.append(Fault(name, round(started, 2), round(time.time() - t0, 2), detail))
    locust.wait()
    admin_dsn = libpq_dsn(platform.url("postgres"))
    caught_up = asyncio.run(wait_drained(admin_dsn, since, timeout_s=240))
    requests, confirmed = load_requests(platform.work / "requests.jsonl", t0)
    result = figures(requests, done)
    invariants = asyncio.run(check(admin_dsn, since, confirmed))
    invariants["workers_caught_up"] = {"ok": caught_up}
    # A fault may cost a 503 or a lost connection, never an error the server did not mean.
    invariants["no_5xx_but_503"] = {
        "ok": not result["server_errors"],
        "count": result["server_errors"],
    }
    seal = subprocess.run(
        [sys.executable, "-m", "amrutam.cli", "audit", "verify"],
        cwd=ROOT,
        env=platform.env,
        capture_output=True,
        text=True,
        check=False,
    )
    invariants["audit_seal_chain_verifies"] = {
        "ok": seal.returncode == 0,
        "output": seal.stdout[-500:],
    }
    result.update(
        duration_s=duration,
        users=users,
        target=TARGET,
        invariants=invariants,
        passed=result["success_ratio"] >= TARGET and all(v["ok"] for v in invariants.values()),
    )
    (out / "chaos.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, done, out / "chaos.png")
    _summary(result)
    return result


def _summary(result: dict[str, Any]) -> None:
    click.echo(
        f"\n{result['requests']:,} requests, {result['failed']} failed: "
        f"{100 * result['success_ratio']:.3f} % answered correctly (target {100 * TARGET:.2f} %)"
    )
    click.echo(
        f"longest stretch below 99 %: {result['longest_below_99pct_s']} s; p95 during faults "
        f"{result['p95_during_faults_ms']:.1f} ms, outside {result['p95_outside_faults_ms']:.1f} ms"
    )
    for fault in result["faults"]:
        click.echo(
            f"  {fault['name']:<17} at {fault['started']:6.1f} s: {fault['failed']:3d} failed of "
            f"{fault['requests']:5d}, {fault['degraded_p95_seconds']:2d} s of degraded p95"
        )
    for name, verdict in result["invariants"].items():
        click.echo(f"  {'ok  ' if verdict['ok'] else 'FAIL'} {name}")
    click.echo("PASS" if result["passed"] else "FAIL")


if __name__ == "__main__":
    main()
