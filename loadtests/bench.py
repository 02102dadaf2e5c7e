"""Hot-path benchmark: ``python -m loadtests.bench`` (or ``make bench``).

Starts the local PostgreSQL and Redis if needed, one API process and a bare Sanic
process pinned to one core, loads a bench data set, drives each scenario with wrk from
the other core, and prints throughput and p50/p95/p99 (medians of ``BENCH_ROUNDS``), the
ratios the aims are stated in (beside the bare endpoint and pgbench) and the API
process's memory. It is a measurement, not a test: it asserts nothing and the figures
go in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import psutil

from amrutam.auth.tokens import AccessTokens
from amrutam.dev.scale import copy_doctors
from amrutam.dev.servers import free_port, pg_bindir
from amrutam.dev.stack import LocalStack
from amrutam.infra.db import libpq_dsn
from amrutam.infra.migrate import upgrade
from amrutam.settings import get_settings
from amrutam.timeutil import utcnow

ROOT = Path(__file__).resolve().parent.parent
LINES_LUA = Path(__file__).parent / "wrk" / "lines.lua"
DOCTORS, SLOTS_PER_DOCTOR, PATIENTS, SPECIALTIES = 200, 250, 30_000, 10
DURATION_S = int(os.environ.get("BENCH_SECONDS", "8"))
# Every figure is the median of this many rounds (the machine is shared and noisy); the
# rounds of one level interleave the scenarios, so a slow minute touches all of them.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# Saturation (32 connections) and a moderate load (4 connections, ~12% of them).
LOAD_LEVELS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "32,4").split(",")]


def _taskset(core: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if shutil.which("taskset") else cmd


async def _load_data(dsn: str, tag: str) -> dict[str, list[str]]:
    conn = await asyncpg.connect(dsn)
    doctors = [uuid.uuid4() for _ in range(DOCTORS)]
    patients = [uuid.uuid4() for _ in range(PATIENTS)]
    users = [
        (d, f"bench-d-{d.hex}@example.com", "!", f"Dr Bench {n}", "doctor")
        for n, d in enumerate(doctors)
    ]
    users += [
        (p, f"bench-p-{p.hex}@example.com", "!", "Bench Patient", "patient") for p in patients
    ]
    await conn.copy_records_to_table(
        "users", records=users, columns=["id", "email", "password_hash", "full_name", "role"]
    )
    await copy_doctors(
        conn,
        [
            (
                d,
                f"Dr Bench {n}",
                f"bench-{tag}-{n % SPECIALTIES}",
                ["english", "hindi"],
                20_000 + 500 * (n % 100),
                n % 30,
                3 + (n % 20) / 10,
                "Pune",
                "Asia/Kolkata",
            )
            for n, d in enumerate(doctors)
        ],
    )
    start = (utcnow() + timedelta(days=30)).replace(minute=0, second=0, microsecond=0)
    slots = [
        (uuid.uuid4(), d, start + timedelta(minutes=30 * k), start + timedelta(minutes=30 * k + 30))
        for k in range(SLOTS_PER_DOCTOR)
        for d in doctors
    ]
    await conn.copy_records_to_table(
        "availability_slots", records=slots, columns=["id", "doctor_id", "starts_at", "ends_at"]
    )
    await conn.execute("ANALYZE")
    await conn.close()
    return {
        "doctors": [str(d) for d in doctors],
        "patients": [str(p) for p in patients],
        "slots": [str(s[0]) for s in slots],
    }


def _write(lines: list[str]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(lines) + "\n")
    return handle.name


def _wrk(url: str, lines_file: str, connections: int) -> dict[str, float]:
    result = subprocess.run(
        _taskset(
            1,
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{DURATION_S}s",
                "-s",
                str(LINES_LUA),
                url,
                "--",
                lines_file,
            ],
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


PGBENCH_SCRIPT = """
\\set n random(1, :slots)
\\set p random(1, :patients)
BEGIN;
SELECT s.doctor_id FROM availability_slots s JOIN bench_raw_slots b ON b.id = s.id
 WHERE b.n = :n FOR UPDATE OF s;
INSERT INTO appointments (id, slot_id, doctor_id, patient_id, starts_at, ends_at)
 SELECT gen_random_uuid(), s.id, s.doctor_id, p.id, s.starts_at, s.ends_at
 FROM bench_raw_slots b JOIN availability_slots s ON s.id = b.id, bench_raw_patients p
 WHERE b.n = :n AND p.n = :p AND s.status = 'open' ON CONFLICT DO NOTHING;
UPDATE availability_slots SET status = 'booked'
 WHERE id = (SELECT id FROM bench_raw_slots WHERE n = :n);
INSERT INTO audit_logs (id, occurred_at, actor_role, action, entity_type, detail, row_hash)
 VALUES (gen_random_uuid(), now(), 'patient', 'appointment.booked', 'appointment', '{}',
         md5(random()::text) || md5(random()::text));
INSERT INTO outbox (id, event_type, aggregate_id, payload)
 VALUES (gen_random_uuid(), 'appointment.booked', gen_random_uuid(), '{}');
END;
"""


def _pgbench(
    dsn: str, data: dict[str, list[str]], port: int, clients: int, part: int, parts: int
) -> float:
    """The booking transaction (lock, insert, update, audit row, outbox row) driven
    directly by pgbench over slots the HTTP scenarios never touch (``part`` of ``parts``,
    so that every round books open slots)."""
    slots = data["slots"][len(data["slots"]) // 2 : -100][part::parts]

    async def prepare() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                "DROP TABLE IF EXISTS bench_raw_slots, bench_raw_patients;"
                "CREATE TABLE bench_raw_slots (n int PRIMARY KEY, id uuid);"
                "CREATE TABLE bench_raw_patients (n int PRIMARY KEY, id uuid)"
            )
            await conn.copy_records_to_table(
                "bench_raw_slots", records=[(i + 1, uuid.UUID(s)) for i, s in enumerate(slots)]
            )
            await conn.copy_records_to_table(
                "bench_raw_patients",
                records=[(i + 1, uuid.UUID(p)) for i, p in enumerate(data["patients"])],
            )
        finally:
            await conn.close()

    asyncio.run(prepare())
    script = _write([PGBENCH_SCRIPT])
    pgbench = str(Path(pg_bindir()) / "pgbench")
    result = subprocess.run(
        _taskset(
            1,
            [
                pgbench,
                "-n",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-c",
                str(clients),
                "-j",
                "1",
                "-T",
                str(DURATION_S),
                "-f",
                script,
                "-D",
                f"slots={len(slots)}",
                "-D",
                f"patients={len(data['patients'])}",
                dsn.rsplit("/", 1)[1],
            ],
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("tps ="))
    return float(line.split()[2])


def _pss_mb(pid: int) -> float:
    """Proportional set size of a process and its children (shared pages split)."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    return sum(p.memory_full_info().pss for p in processes) / 2**20


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _summary(
    by_level: dict[int, dict[str, dict[str, float]]], raw_tps: float, memory: dict[str, float]
) -> None:
    """The figures the aims in docs/performance.md are stated in."""
    busiest, lightest = max(by_level), min(by_level)
    top = by_level[busiest]
    bare = top["bare sanic (same JSON from memory)"]["rps"]
    print(f"\nside by side ({busiest} connections, medians), against the bare Sanic endpoint:")
    for name in ("search, cached", "profile read"):
        rps = top[name]["rps"]
        print(f"  {name:22} {rps:7.0f} / {bare:.0f} req/s = {rps / bare:.2f}")
    booking = top["booking, uncontended"]["rps"]
    print(
        f"  booking endpoint / the same transaction in pgbench: {booking:.0f} / "
        f"{raw_tps:.0f} = {booking / raw_tps:.2f}"
    )
    for twin, fhir in (
        ("profile read", "fhir: Practitioner read"),
        ("slot listing", "fhir: Slot search"),
    ):
        for level in sorted(by_level, reverse=True):
            v1, ours = by_level[level][twin], by_level[level][fhir]
            print(
                f"  {fhir} beside /v1 {twin}, {level} connections: p95 {ours['p95_ms']:.2f} / "
                f"{v1['p95_ms']:.2f} ms, {ours['rps']:.0f} / {v1['rps']:.0f} req/s"
            )
    if lightest != busiest:
        light = by_level[lightest]
        for name in ("search, cached", "profile read"):
            print(f"  p95 at {lightest} connections, {name}: {light[name]['p95_ms']:.2f} ms")
    print(
        "  API memory (PSS, one process): "
        + ", ".join(f"{when} {mb:.0f} MB" for when, mb in memory.items())
    )


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    settings = get_settings()
    stack = LocalStack.from_settings(settings, ROOT / ".local")
    stack.up()
    upgrade(settings.database_admin_url)
    dsn = libpq_dsn(settings.database_admin_url)
    tag = uuid.uuid4().hex[:6]
    print(
        f"loading bench data ({DOCTORS} doctors, {DOCTORS * SLOTS_PER_DOCTOR} slots, "
        f"{PATIENTS} patients)...",
        flush=True,
    )
    data = asyncio.run(_load_data(dsn, tag))
    tokens = AccessTokens(settings)
    patient_tokens = [tokens.issue(uuid.UUID(p), "patient", uuid.uuid4()) for p in data["patients"]]

    api_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        "AMRUTAM_PORT": str(api_port),
        "AMRUTAM_WORKERS": "1",
        "AMRUTAM_LOG_LEVEL": "WARNING",
        # As the image sets it: freed password-hash buffers go back to the system.
        "MALLOC_MMAP_THRESHOLD_": "1048576",
        "AMRUTAM_RATE_LIMIT_USER": "1000000/minute",
        "AMRUTAM_RATE_LIMIT_ANONYMOUS": "1000000/minute",
        "AMRUTAM_RATE_LIMIT_LOGIN_IP": "1000000/minute",
        # One bench patient books every slot: no hoarding cap here.
        "AMRUTAM_MAX_OPEN_BOOKINGS": "1000000",
        "AMRUTAM_MAX_OPEN_BOOKINGS_PER_DOCTOR": "1000000",
    }
    api = subprocess.Popen(_taskset(0, [sys.executable, "-m", "api"]), cwd=ROOT, env=env)
    bare = None
    try:
        base = f"http://127.0.0.1:{api_port}"
        _wait(base + "/livez")
        memory = {"after start": _pss_mb(api.pid)}
        search_path = f"/v1/doctors?specialty=bench-{tag}-3"
        body = httpx.get(base + search_path).content
        body_file = _write([body.decode()])
        bare = subprocess.Popen(
            _taskset(0, [sys.executable, "-m", "loadtests.bare", body_file, str(bare_port)]),
            cwd=ROOT,
        )
        _wait(f"http://127.0.0.1:{bare_port}/bare")

        credentials = f'{{"email":"bench-login-{tag}@example.com","password":"bench-password-1"}}'
        registration = credentials[:-1] + ',"full_name":"Bench Login","role":"patient"}'
        httpx.post(base + "/v1/auth/register", content=registration).raise_for_status()
        n, half = len(data["slots"]), len(data["slots"]) // 2
        by_level: dict[int, dict[str, dict[str, float]]] = {}
        raw_tps = 0.0
        scenarios = {
            "bare sanic (same JSON from memory)": (f"http://127.0.0.1:{bare_port}", ["GET /bare"]),
            "search, cached": (base, [f"GET {search_path}"]),
            "search, uncached": (
                base,
                [
                    f"GET /v1/doctors?specialty=bench-{tag}-{i % SPECIALTIES}&min_fee={i}"
                    for i in range(60_000)
                ],
            ),
            "auth: me": (base, [f"GET /v1/auth/me {t}" for t in patient_tokens[:1000]]),
            "profile read": (base, [f"GET /v1/doctors/{d}" for d in data["doctors"]]),
            "fhir: Practitioner read": (
                base,
                [f"GET /fhir/R4/Practitioner/{d}" for d in data["doctors"]],
            ),
            "slot listing": (
                base,
                [f"GET /v1/doctors/{d}/slots?limit=20" for d in data["doctors"]],
            ),
            "fhir: Slot search": (
                base,
                [f"GET /fhir/R4/Slot?schedule=Schedule/{d}&_count=20" for d in data["doctors"]],
            ),
            # Every booking takes a slot never tried before.
            "booking, uncontended": (
                base,
                [
                    f"POST /v1/appointments/book {patient_tokens[i % PATIENTS]} "
                    f'{{"slot_id":"{slot}"}}'
                    for i, slot in enumerate(data["slots"][:half])
                ],
            ),
            "booking, contended (20 slots)": (
                base,
                [
                    f"POST /v1/appointments/book {patient_tokens[i % PATIENTS]} "
                    f'{{"slot_id":"{data["slots"][n - 1 - i % 20]}"}}'
                    for i in range(5000)
                ],
            ),
            # Last: Argon2id hashes still queued when it ends would slow what follows.
            "auth: login (Argon2id)": (base, [f"POST /v1/auth/login - {credentials}"]),
        }
        chunks = len(LOAD_LEVELS) * ROUNDS
        for level, connections in enumerate(LOAD_LEVELS):
            print(
                f"\nwrk: 1 thread, {connections} connections, {DURATION_S} s per scenario, "
                f"medians of {ROUNDS} rounds; API and bare server pinned to core 0, wrk to "
                "core 1\n",
                flush=True,
            )
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in scenarios}
            for round_ in range(ROUNDS):
                for name, (url, lines) in scenarios.items():
                    # Each level and round takes its own part of the lists that must not
                    # repeat (slots booked, queries cached by an earlier run).
                    chunk = level * ROUNDS + round_
                    fresh = "uncontended" in name or "uncached" in name
                    picked = lines[chunk::chunks] if fresh else lines
                    runs[name].append(_wrk(url, _write(picked), connections))
                time.sleep(2)  # password hashes still queued by the login scenario finish
            print(
                f"{'scenario':36} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
                f"{'non-2xx':>8}"
            )
            results = by_level.setdefault(connections, {})
            for name, figures_of_rounds in runs.items():
                figures = {
                    key: statistics.median(f[key] for f in figures_of_rounds)
                    for key in figures_of_rounds[0]
                }
                results[name] = figures
                print(
                    f"{name:36} {figures['rps']:9.0f} {figures['p50_ms']:8.2f} "
                    f"{figures['p95_ms']:8.2f} {figures['p99_ms']:8.2f} "
                    f"{figures['non_2xx']:8.0f}",
                    flush=True,
                )
            if level == 0:
                raw_tps = statistics.median(
                    _pgbench(dsn, data, stack.postgres.port, connections, round_, ROUNDS)
                    for round_ in range(ROUNDS)
                )
        memory["after the runs"] = _pss_mb(api.pid)
        _summary(by_level, raw_tps, memory)
    finally:
        for process in (api, bare):
            if process is not None:
                process.terminate()
                process.wait()


if __name__ == "__main__":
    main()
