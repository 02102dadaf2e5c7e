"""Run the load suite: ``make slo`` (CI) and ``make loadtest``.

By default against a stack it starts: the local PostgreSQL and Redis, migrated and seeded
at scale, and the API (two processes). With ``--base-url`` (``make slo
SLO_BASE_URL=...``) against a platform already running there, seeded with the profile's
data (``amrutam seed --doctors N --patients M``): the cluster's ingress, for example.
Locust runs headless with the SLO gate; exits with Locust's code, non-zero when a target
is missed. CSV, HTML, ``slo.json`` and the p95 chart land in ``loadtests/results/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import psutil

from amrutam.dev.servers import free_port
from amrutam.dev.stack import LocalStack
from amrutam.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
# The gate (loadtests/slo.py) writes its verdict and chart into the same folder.
RESULTS = Path(os.environ.get("SLO_RESULTS", Path(__file__).with_name("results")))
PROFILES = {
    # name: (doctors, patients, days, audit rows, users, spawn rate, duration, pace)
    # Users arrive a few a second: each logs in once (Argon2id), as a real day spreads.
    # The full run's users think ten times faster (pace 0.1): 60 of them are 600 people,
    # about the highest load that meets the aim here (docs/performance.md).
    "ci": (2_000, 5_000, 7, 100_000, 40, 4, "100s", 1.0),
    "full": (10_000, 100_000, 14, 5_000_000, 60, 6, "10m", 0.1),
    # The short form in the test cluster, where the platform shares 2 cores with the
    # control plane and the load generator: 12 users five times as busy as people, about
    # 30 requests a second, for long enough that the API's HPA adds a pod.
    "cluster": (200, 1_000, 3, 0, 12, 3, "100s", 0.2),
}


def _cpu_seconds(api_pid: int) -> dict[str, float]:
    """CPU time used so far by the API (all its processes), PostgreSQL and Redis."""
    api = psutil.Process(api_pid)
    groups = {"API": [api, *api.children(recursive=True)], "PostgreSQL": [], "Redis": []}
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "postgres":
            groups["PostgreSQL"].append(process)
        elif (process.info["name"] or "").startswith("redis-server"):
            groups["Redis"].append(process)
    totals = {}
    for group, processes in groups.items():
        seconds = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds += times.user + times.system
        totals[group] = seconds
    return totals


def _report_cpu(before: dict[str, float], after: dict[str, float], wall_s: float) -> None:
    """Where the machine's cores went during the run: the load generator beside the rest."""
    shares = ", ".join(f"{group} {(after[group] - before[group]) / wall_s:.2f}" for group in after)
    print(f"cores used over the run: {shares}", flush=True)


def _amrutam(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "amrutam.cli", *args], cwd=ROOT, check=True)


@click.command()
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="ci", show_default=True)
@click.option("--users", type=int, default=None, help="override the profile's user count")
@click.option("--duration", default=None, help="override the profile's run time (e.g. 90s)")
@click.option("--rate", type=int, default=None, help="override the users started per second")
@click.option("--pace", type=float, default=None, help="override the think-time factor")
@click.option("--base-url", default=None, help="a running platform, seeded, to load instead")
def main(
    profile: str,
    users: int | None,
    duration: str | None,
    rate: int | None,
    pace: float | None,
    base_url: str | None,
) -> None:
    if base_url:
        sys.exit(_locust(base_url, profile, users, duration, rate, pace).returncode)
    settings = get_settings()
    stack = LocalStack.from_settings(settings, ROOT / ".local")
    started_here = not stack.postgres.running()
    stack.up()
    try:
        _run(profile, users, duration, rate, pace)
    finally:
        if started_here:  # leave the machine as we found it
            stack.down()


def _run(
    profile: str, users: int | None, duration: str | None, rate: int | None, pace: float | None
) -> None:
    doctors, patients, days, audit_rows, *_ = PROFILES[profile]
    _amrutam("migrate")
    _amrutam("partitions", "maintain")
    _amrutam("seed")
    _amrutam(
        "seed",
        f"--doctors={doctors}",
        f"--patients={patients}",
        f"--days={days}",
        f"--audit-rows={audit_rows}",
    )
    port = free_port()
    env = {
        **os.environ,
        "AMRUTAM_PORT": str(port),
        "AMRUTAM_WORKERS": "2",
        "AMRUTAM_LOG_LEVEL": "WARNING",
        # One load generator is many users behind one address: per-address limits off.
        "AMRUTAM_RATE_LIMIT_ANONYMOUS": "1000000/minute",
        "AMRUTAM_RATE_LIMIT_LOGIN_IP": "1000000/minute",
        "AMRUTAM_RATE_LIMIT_MFA_IP": "1000000/minute",
    }
    api = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        cpu_before, started = _cpu_seconds(api.pid), time.monotonic()
        children_before = os.times()
        locust = _locust(url, profile, users, duration, rate, pace)
        children_after, cpu_after = os.times(), _cpu_seconds(api.pid)
        locust_s = (children_after.children_user + children_after.children_system) - (
            children_before.children_user + children_before.children_system
        )
        cpu_before["Locust"], cpu_after["Locust"] = 0.0, locust_s
        _report_cpu(cpu_before, cpu_after, time.monotonic() - started)
        if locust.returncode:
            sys.exit(locust.returncode)
    finally:
        api.terminate()
        api.wait()


def _locust(
    url: str,
    profile: str,
    users: int | None,
    duration: str | None,
    rate: int | None,
    pace: float | None,
) -> subprocess.CompletedProcess[bytes]:
    """Locust headless against ``url`` with the profile's users, the SLO gate on."""
    doctors, patients, _, _, count, spawn, run_time, paced = PROFILES[profile]
    RESULTS.mkdir(exist_ok=True)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(Path(__file__).with_name("locustfile.py")),
            "--headless",
            "-u",
            str(users or count),
            "-r",
            str(rate or spawn),
            "-t",
            duration or run_time,
            "--host",
            url,
            "--only-summary",
            "--csv",
            str(RESULTS / "locust"),
            "--html",
            str(RESULTS / "locust.html"),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "SEED_DOCTORS": str(doctors),
            "SEED_PATIENTS": str(patients),
            "LOAD_PACE": str(pace or paced),
        },
    )


if __name__ == "__main__":
    main()
