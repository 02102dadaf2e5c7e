"""Step the load up and find the highest that still meets the targets.

    python -m loadtests.sweep [--users 40,80,120,160] [--duration 60s]

Each step is one ``loadtests.run`` (same stack, same data, a fresh API) at a number of
users; its figures are kept in ``loadtests/results/sweep-<users>/``. The table says, for
each step, the throughput and p95s, and whether it meets the seed's targets (the CI
gate) and the aim (reads p95 ≤ 20 ms, writes ≤ 50 ms, p99 within 3x p95, errors < 0.1%).
Then the per-endpoint p50/p95/p99 of the highest step that met the aim (or the gate).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

RESULTS = Path(__file__).with_name("results")
AIM = {"read_p95_ms": 20.0, "write_p95_ms": 50.0, "p99_over_p95": 3.0, "error_rate": 0.001}


def meets_aim(figures: dict[str, float]) -> bool:
    worst_p95 = max(figures["read_p95_ms"], figures["write_p95_ms"])
    return (
        figures["read_p95_ms"] <= AIM["read_p95_ms"]
        and figures["write_p95_ms"] <= AIM["write_p95_ms"]
        and figures["p99_ms"] <= AIM["p99_over_p95"] * worst_p95
        and figures["error_rate"] < AIM["error_rate"]
    )


def throughput(folder: Path) -> float:
    with (folder / "locust_stats.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                return float(row["Requests/s"])
    return 0.0


def endpoints(folder: Path) -> list[dict[str, Any]]:
    with (folder / "locust_stats.csv").open() as handle:
        return [row for row in csv.DictReader(handle) if row["Type"]]


@click.command()
@click.option("--users", default="40,80,120,160", show_default=True)
@click.option("--duration", default="60s", show_default=True)
@click.option("--pace", default=0.1, show_default=True, help="think-time factor (see locustfile)")
@click.option("--profile", default="ci", show_default=True)
def main(users: str, duration: str, pace: float, profile: str) -> None:
    steps = []
    for count in [int(u) for u in users.split(",")]:
        rate = max(2, count // 10)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "loadtests.run",
                f"--profile={profile}",
                f"--pace={pace}",
                f"--users={count}",
                f"--rate={rate}",
                f"--duration={duration}",
            ],
            check=False,
        )
        folder = RESULTS / f"sweep-{count}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(RESULTS, folder, ignore=shutil.ignore_patterns("sweep-*"))
        figures = json.loads((folder / "slo.json").read_text())["figures"]
        steps.append((count, folder, figures, done.returncode == 0, meets_aim(figures)))

    click.echo("\n| users | req/s | read p95 ms | write p95 ms | p99 ms | errors | gate | aim |")
    click.echo("|---:|---:|---:|---:|---:|---:|---|---|")
    for count, folder, f, gate, aim in steps:
        click.echo(
            f"| {count} | {throughput(folder):.0f} | {f['read_p95_ms']:.1f} | "
            f"{f['write_p95_ms']:.1f} | {f['p99_ms']:.1f} | {f['error_rate']:.2%} | "
            f"{'pass' if gate else 'FAIL'} | {'met' if aim else 'missed'} |"
        )
    best = [s for s in steps if s[4]] or [s for s in steps if s[3]]
    if not best:
        return
    count, folder, *_ = max(best, key=lambda s: throughput(s[1]))
    click.echo(f"\nPer endpoint at {count} users ({throughput(folder):.0f} req/s):\n")
    click.echo("| endpoint | req/s | p50 ms | p95 ms | p99 ms | failures |")
    click.echo("|---|---:|---:|---:|---:|---:|")
    for row in endpoints(folder):
        click.echo(
            f"| {row['Type']} {row['Name']} | {float(row['Requests/s']):.1f} | {row['50%']} | "
            f"{row['95%']} | {row['99%']} | {row['Failure Count']} |"
        )


if __name__ == "__main__":
    main()
