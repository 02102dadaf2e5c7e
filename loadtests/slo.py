"""The SLO gate, as a Locust plugin: import it from a locustfile.

Every request is classed read (GET) or write. When Locust quits, the gate compares p95
per class, p99 overall and the error rate with the targets of ``slo.toml`` (or the file
named by ``SLO_TARGETS``), prints the verdict, writes ``slo.json`` and a PNG of p95 over
time per class against its target into ``SLO_RESULTS`` (default ``loadtests/results``),
and makes Locust exit non-zero when a target is missed.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment

from loadtests.stats import percentile

TARGETS_FILE = Path(os.environ.get("SLO_TARGETS", Path(__file__).with_name("slo.toml")))
RESULTS = Path(os.environ.get("SLO_RESULTS", Path(__file__).with_name("results")))
WINDOW_S = 5

_samples: dict[str, list[float]] = defaultdict(list)
_windows: dict[tuple[str, int], list[float]] = defaultdict(list)
_counts = {"requests": 0, "failures": 0}
_started = time.monotonic()


@events.request.add_listener
def _record(request_type: str, response_time: float, exception: Any = None, **_: Any) -> None:
    kind = "read" if request_type == "GET" else "write"
    _samples[kind].append(response_time)
    _windows[(kind, int((time.monotonic() - _started) // WINDOW_S))].append(response_time)
    _counts["requests"] += 1
    if exception is not None:
        _counts["failures"] += 1


def verdict(targets: dict[str, float]) -> dict[str, Any]:
    everything = _samples["read"] + _samples["write"]
    figures = {
        "requests": _counts["requests"],
        "error_rate": _counts["failures"] / max(1, _counts["requests"]),
        "read_p50_ms": percentile(_samples["read"], 50),
        "read_p95_ms": percentile(_samples["read"], 95),
        "write_p50_ms": percentile(_samples["write"], 50),
        "write_p95_ms": percentile(_samples["write"], 95),
        "p99_ms": percentile(everything, 99),
    }
    missed = [
        f"{name} {figures[measured]:.4g} > {targets[target]:.4g}"
        for name, measured, target in (
            ("read p95", "read_p95_ms", "read_p95_ms"),
            ("write p95", "write_p95_ms", "write_p95_ms"),
            ("p99", "p99_ms", "p99_ms"),
            ("error rate", "error_rate", "max_error_rate"),
        )
        if figures[measured] > targets[target]
    ]
    return {"figures": figures, "targets": targets, "missed": missed, "ok": not missed}


def _chart(targets: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for kind, color in (("read", "tab:blue"), ("write", "tab:orange")):
        points = sorted(
            (w * WINDOW_S, percentile(v, 95)) for (k, w), v in _windows.items() if k == kind
        )
        if points:
            ax.plot(*zip(*points, strict=True), label=f"{kind} p95", color=color)
        ax.axhline(targets[f"{kind}_p95_ms"], color=color, linestyle="--", label=f"{kind} target")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("p95 latency, ms")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("p95 per class against the SLO targets")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@events.quitting.add_listener
def _gate(environment: Environment, **_: Any) -> None:
    targets = tomllib.loads(TARGETS_FILE.read_text())
    result = verdict(targets)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "slo.json").write_text(json.dumps(result, indent=2))
    _chart(targets, RESULTS / "slo-p95.png")
    f = result["figures"]
    print(
        f"SLO gate: {f['requests']} requests, errors {f['error_rate']:.3%}, "
        f"read p50/p95 {f['read_p50_ms']:.1f}/{f['read_p95_ms']:.1f} ms, "
        f"write p50/p95 {f['write_p50_ms']:.1f}/{f['write_p95_ms']:.1f} ms, "
        f"p99 {f['p99_ms']:.1f} ms -> {'PASS' if result['ok'] else 'FAIL'}"
    )
    for miss in result["missed"]:
        print(f"  missed: {miss}")
    if not result["ok"]:
        environment.process_exit_code = 1
