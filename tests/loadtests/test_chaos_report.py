"""The chaos run's arithmetic: what counts as failed, degraded and below 99 %."""

from __future__ import annotations

from loadtests.chaos_report import Fault, Request, figures


def test_figures_count_failures_per_fault_and_the_longest_bad_stretch() -> None:
    requests = []
    for second in range(100):
        for i in range(100):
            # Seconds 40 and 41: a fault costs 5 requests each (503s) and slows the rest.
            hit = second in (40, 41)
            failed = hit and i < 5
            requests.append(
                Request(
                    second + i / 100, not failed, 200.0 if hit else 10.0, 503 if failed else 200
                )
            )
    requests.append(Request(70.5, False, 3.0, 500))  # a server error outside any fault
    result = figures(requests, [Fault("postgres-restart", 40.0, 41.0)])

    assert result["requests"] == 10_001
    assert result["failed"] == 11
    assert result["server_errors"] == 1  # 503s are the contract's answer to an outage
    assert result["success_ratio"] == (10_001 - 11) / 10_001
    assert result["longest_below_99pct_s"] == 2  # 95 % in seconds 40 and 41
    (cost,) = result["faults"]
    assert cost["failed"] == 10
    assert cost["degraded_p95_seconds"] == 2
    assert cost["worst_p95_ms"] == 200.0
    assert result["p95_outside_faults_ms"] == 10.0
