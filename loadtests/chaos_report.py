"""The chaos run's figures: success ratio and p95 per second, what each fault cost, and a
PNG timeline with the faults marked."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtests.stats import percentile

# A fault's effects are counted from its start until this long after it ended: requests
# already waiting, pools refilling, workers catching up.
AFTERMATH_S = 15
# A second's p95 is degraded when it is above this multiple of the median outside faults.
DEGRADED_FACTOR = 2.0


@dataclass
class Fault:
    name: str
    started: float  # seconds from the start of the load
    ended: float
    detail: str = ""


@dataclass
class Request:
    at: float  # seconds from the start of the load
    ok: bool
    ms: float
    status: int  # 0: no answer (a connection error)


def load_requests(path: Path, t0: float) -> tuple[list[Request], set[str]]:
    """The recorded requests, and the ids of the bookings the API confirmed (201)."""
    requests, booked = [], set()
    for line in path.read_text().splitlines():
        row = json.loads(line)
        requests.append(Request(row[0] - t0, bool(row[4]), row[5], row[3]))
        if len(row) > 6:
            booked.add(row[6])
    return requests, booked


def _in_fault(at: float, faults: list[Fault]) -> bool:
    return any(f.started <= at <= f.ended + AFTERMATH_S for f in faults)


def figures(requests: list[Request], faults: list[Fault]) -> dict[str, Any]:
    seconds: dict[int, list[Request]] = defaultdict(list)
    for r in requests:
        seconds[int(r.at)].append(r)
    timeline = [
        {
            "second": s,
            "requests": len(rs),
            "success": sum(r.ok for r in rs) / len(rs),
            "p95_ms": percentile([r.ms for r in rs], 95),
        }
        for s, rs in sorted(seconds.items())
    ]
    calm = [p["p95_ms"] for p in timeline if not _in_fault(p["second"], faults)]
    baseline = statistics.median(calm) if calm else 0.0
    longest = run = 0
    for point in timeline:
        run = run + 1 if point["success"] < 0.99 else 0
        longest = max(longest, run)
    costs = []
    for fault in faults:
        window = [r for r in requests if fault.started <= r.at <= fault.ended + AFTERMATH_S]
        degraded = [
            p
            for p in timeline
            if fault.started <= p["second"] <= fault.ended + AFTERMATH_S
            and p["p95_ms"] > DEGRADED_FACTOR * baseline
        ]
        costs.append(
            {
                **asdict(fault),
                "requests": len(window),
                "failed": sum(not r.ok for r in window),
                "degraded_p95_seconds": len(degraded),
                "worst_p95_ms": max((p["p95_ms"] for p in degraded), default=None),
            }
        )
    during = [r.ms for r in requests if _in_fault(r.at, faults)]
    outside = [r.ms for r in requests if not _in_fault(r.at, faults)]
    total = len(requests)
    return {
        "requests": total,
        "failed": sum(not r.ok for r in requests),
        "server_errors": sum(r.status >= 500 and r.status != 503 for r in requests),
        "success_ratio": sum(r.ok for r in requests) / total if total else 0.0,
        "longest_below_99pct_s": longest,
        "p95_during_faults_ms": percentile(during, 95),
        "p95_outside_faults_ms": percentile(outside, 95),
        "baseline_p95_per_second_ms": baseline,
        "faults": costs,
        "timeline": timeline,
    }


def plot(result: dict[str, Any], faults: list[Fault], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = result["timeline"]
    xs = [p["second"] for p in timeline]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(12, 6))
    top.plot(xs, [100 * p["success"] for p in timeline], lw=0.8)
    top.axhline(99, color="grey", ls=":", lw=0.8)
    top.set_ylabel("success per second (%)")
    top.set_ylim(min(90.0, min((100 * p["success"] for p in timeline), default=90)) - 1, 100.5)
    bottom.plot(xs, [p["p95_ms"] for p in timeline], lw=0.8, color="tab:orange")
    bottom.set_yscale("log")
    bottom.set_ylabel("p95 per second (ms)")
    bottom.set_xlabel("seconds since the load started")
    for fault in faults:
        for axis in (top, bottom):
            axis.axvspan(fault.started, fault.ended + 0.5, color="tab:red", alpha=0.2)
        top.annotate(
            fault.name,
            (fault.started, 100.3),
            fontsize=7,
            rotation=30,
            ha="left",
            va="bottom",
            annotation_clip=False,
        )
    ratio = 100 * result["success_ratio"]
    fig.suptitle(
        f"Chaos run: {result['requests']:,} requests, {ratio:.3f} % answered correctly", y=0.995
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
